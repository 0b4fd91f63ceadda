"""A registry of 1D sequence mixers: the operators the 1D MetaFormer (metaformer_1d) can swap in.

A sequence mixer takes `(B, dim, L)` and returns the same shape, for any `L >= 1`, and is built as
`mixer(dim, **kwargs)` with every other argument defaulted. The 2D token mixers have their own
registry (zoo.operators.registry): a 2D mixer cannot mix sequences and vice versa.
"""

from collections.abc import Callable

from torch import nn

__all__ = ["create_sequence_mixer", "list_sequence_mixers", "register_sequence_mixer"]

_SEQUENCE_MIXERS: dict[str, Callable[..., nn.Module]] = {}


def register_sequence_mixer(name: str) -> Callable:
    """Register a sequence mixer class (or factory) under `name`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _SEQUENCE_MIXERS and _SEQUENCE_MIXERS[name] is not factory:
            raise ValueError(f"sequence mixer {name!r} is registered twice")
        _SEQUENCE_MIXERS[name] = factory
        return factory

    return wrap


def list_sequence_mixers() -> list[str]:
    """The names of all registered sequence mixers, sorted."""
    return sorted(_SEQUENCE_MIXERS)


def create_sequence_mixer(name: str, dim: int, **kwargs) -> nn.Module:
    """Build the sequence mixer `name` for `dim` channels.

    Raises:
        KeyError: `name` is not registered; the message lists the registered mixers.
    """
    if name not in _SEQUENCE_MIXERS:
        raise KeyError(
            f"unknown sequence mixer {name!r}; choose one of: {', '.join(list_sequence_mixers())}"
        )
    return _SEQUENCE_MIXERS[name](dim, **kwargs)
