"""A registry of 2D token mixers: the operators the MetaFormer grid can swap in.

A token mixer takes `(B, dim, H, W)` and returns the same shape, for any `H, W >= 1`, and is
built as `mixer(dim, **kwargs)` with every other argument defaulted. Operator files register
their mixers here with `@register_token_mixer('name')`; `zoo.backbones.metaformer_grid` builds
one `metaformer_s12_<name>` model per entry.
"""

from collections.abc import Callable

from torch import nn

__all__ = [
    "UnknownTokenMixerError",
    "create_token_mixer",
    "list_token_mixers",
    "register_token_mixer",
]


class UnknownTokenMixerError(KeyError):
    """A token mixer name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


_TOKEN_MIXERS: dict[str, Callable[..., nn.Module]] = {}


def register_token_mixer(name: str) -> Callable:
    """Register a token mixer class (or factory) under `name`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _TOKEN_MIXERS and _TOKEN_MIXERS[name] is not factory:
            raise ValueError(f"token mixer {name!r} is registered twice")
        _TOKEN_MIXERS[name] = factory
        return factory

    return wrap


def list_token_mixers() -> list[str]:
    """The names of all registered token mixers, sorted."""
    return sorted(_TOKEN_MIXERS)


def create_token_mixer(name: str, dim: int, **kwargs) -> nn.Module:
    """Build the token mixer `name` for `dim` channels.

    Raises:
        UnknownTokenMixerError: `name` is not registered; the message lists the registered mixers.
    """
    if name not in _TOKEN_MIXERS:
        raise UnknownTokenMixerError(
            f"unknown token mixer {name!r}; choose one of: {', '.join(list_token_mixers())}"
        )
    return _TOKEN_MIXERS[name](dim, **kwargs)
