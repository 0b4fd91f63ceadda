"""The random state of a run, saved in its checkpoints and restored on resume.

Lightning saves weights, optimiser, schedulers, loop progress and callback states, but not the
random number generators. Every random choice of a run draws from the process's global
generators: the shuffling of the train loader (torch), augmentation (numpy and Python, through
`data.base.Compose` and `data.base.global_numpy_generator`), dropout and drop-path (torch), the
P x K sampler of re-ID (numpy). Saving their states with the checkpoint and restoring them on
resume makes the resumed epochs draw what an uninterrupted run would have drawn.

Only plain data is stored (tensors, lists, ints, strings), so a checkpoint stays loadable with
`torch.load(weights_only=True)`.
"""

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, numpy's and torch's global generators (CUDA's too, if present)."""
    # the legacy state: the global bit generator's, plus the cached Gaussian of np.random.randn
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state from `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))  # a checkpoint may hold lists for tuples
    numpy_state = state["numpy"]
    key = numpy_state["key"].numpy().astype(np.uint32)
    np.random.set_state((numpy_state["name"], key, numpy_state["pos"], numpy_state["has_gauss"],
                         numpy_state["gauss"]))  # fmt: skip
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomState(L.Callback):
    """Stores the global RNG states in every checkpoint and restores them when a run resumes.

    The state is taken when the checkpoint is written (for `last.ckpt`: after the epoch's
    validation, before the next epoch draws anything) and restored while Lightning restores the
    checkpoint, before the resumed run creates its train loader: the next draws are the ones the
    uninterrupted run made at the start of the next epoch.
    """

    def state_dict(self) -> dict[str, Any]:
        return capture_rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng_state(state_dict)
