"""Checkpoints that load without running code, and the one function that loads them.

A checkpoint is a pickle, and unpickling imports and calls whatever the file names: a
checkpoint from a stranger can run any code. convzoo's checkpoints therefore hold plain data
only (tensors, numbers, strings, lists, dicts: the run's resolved config included), and are
loaded with torch's weights-only unpickler, which refuses anything else without importing it.

`load_checkpoint` is the one door: train.py's pre-flight checks (resume, mode=test) and every
other reader of a .ckpt go through it, so that a bad file is the same clear error everywhere.
"""

import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

#: Where a checkpoint keeps the resolved config of the run that wrote it.
CONFIG_KEY = "convzoo_config"

#: The config key that lets a user load a checkpoint that needs more than plain data.
TRUST_KEY = "trust_checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, empty, corrupt, or of another run."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that holds Python objects whose unpickling would run code."""


class ConfigInCheckpoint(Callback):
    """Writes the run's resolved config into every checkpoint as plain data (`CONFIG_KEY`).

    A checkpoint then says which task and backbone made it, so that loading it into another
    one fails with a message instead of a wall of missing state-dict keys.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def load_checkpoint(
    path: str | Path,
    *,
    task: str | None = None,
    backbone: str | None = None,
    trust: bool = False,
    key: str = "ckpt_path",
    trust_hint: str | None = f"{TRUST_KEY}=true",
) -> dict[str, Any]:
    """Load a Lightning checkpoint of convzoo on the CPU, refusing anything but plain data.

    Args:
        path: The .ckpt file.
        task: The `_target_` of the task it must belong to (`cfg.task._target_`); None: any.
        backbone: The timm model name it must hold (`cfg.backbone.name`); None: any.
        trust: Unpickle it in full, running whatever code it names. Only for a file whose
            author you trust (`trust_checkpoint=true` on the command line).
        key: The config key or argument that named the file, quoted in errors.
        trust_hint: How a user sets `trust` where this file was named, quoted when it is
            refused; None where there is no such switch.

    Returns:
        The checkpoint dict (`state_dict`, `hyper_parameters`, `CONFIG_KEY`, ...).

    Raises:
        CheckpointError: The file is missing, empty, corrupt, not a Lightning checkpoint, or
            belongs to another task or backbone.
        UnsafeCheckpointError: It needs more than plain data and `trust` is False.
    """
    path = Path(path)
    where = f"{key}={str(path)!r}"
    _check_bytes(path, where)
    unsafe = _unsafe_globals(path, where)
    if unsafe and not trust:
        remedy = (
            f"If you trust whoever made this file, load it anyway with {trust_hint}."
            if trust_hint
            else "This one loads plain data only."
        )
        raise UnsafeCheckpointError(
            f"{where} was refused: it holds Python objects, not plain data "
            f"({', '.join(sorted(unsafe))}). Unpickling it would import and run their code, "
            "and a checkpoint can name any code. convzoo's checkpoints hold tensors, numbers, "
            f"strings and the run's config only. {remedy}"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as error:
        raise _corrupt(where, error) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = f"a dict of {sorted(checkpoint)[:8]}" if isinstance(checkpoint, dict) else None
        raise CheckpointError(
            f"{where} is not a Lightning checkpoint: expected a dict with 'state_dict', found "
            f"{found or type(checkpoint).__name__}"
        )
    check_identity(checkpoint, where, task=task, backbone=backbone)
    return checkpoint


def _check_bytes(path: Path, where: str) -> None:
    """Raise `CheckpointError` unless `path` is an intact zip archive (torch.save's format) or a
    whole pickle (torch's legacy format, or a file made to look like a checkpoint)."""
    if not path.is_file():
        raise CheckpointError(f"{where}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{where} is empty (0 bytes); expected a checkpoint written by train.py "
            "(a run killed while saving can leave one: use the previous checkpoint)"
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                # every member against the CRC-32 torch.save stored: torch.load does not
                # check it, and flipped bytes in a weight would load silently
                damaged = archive.testzip()
        except zipfile.BadZipFile as error:
            raise _corrupt(where, error) from None
        if damaged:
            raise CheckpointError(
                f"{where} is corrupt: its member {damaged} fails its CRC-32 check (the bytes "
                "changed after torch.save wrote them); use an earlier checkpoint of the run"
            )
        return
    with path.open("rb") as stream:
        head = stream.read(4)
    if head.startswith(b"PK"):
        raise CheckpointError(
            f"{where} is a damaged zip archive (no central directory): truncated while it was "
            "written or copied; use an earlier checkpoint of the run"
        )
    if _imports_of_bare_pickle(path) is None:
        raise CheckpointError(
            f"{where} is not a checkpoint: neither a zip archive (what torch.save writes) nor "
            f"a pickle (it starts with {head!r})"
        )


def _unsafe_globals(path: Path, where: str) -> list[str]:
    """The classes and functions unpickling `path` would import beyond plain data.

    Read statically, from the pickle's opcodes: nothing in the file is imported or run.
    """
    if not zipfile.is_zipfile(path):
        return _imports_of_bare_pickle(path) or []
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, KeyError) as error:
        raise _corrupt(where, error) from None


def check_identity(
    checkpoint: dict[str, Any], where: str, *, task: str | None, backbone: str | None
) -> None:
    """Raise `CheckpointError` if `checkpoint` was written by another task or backbone.

    The task is read from the stored config; the backbone from it, or, for a checkpoint older
    than the stored config, from the task's hyper-parameters.
    """
    config = checkpoint.get(CONFIG_KEY) or {}
    found_task = config.get("task", {}).get("_target_")
    found_backbone = config.get("backbone", {}).get("name")
    found_backbone = found_backbone or checkpoint.get("hyper_parameters", {}).get("backbone")
    if (task or backbone) and not (found_task or found_backbone):
        raise CheckpointError(
            f"{where} is not a convzoo checkpoint: it records neither a task nor a backbone "
            f"(no '{CONFIG_KEY}', no hyper_parameters.backbone); expected task {task} with "
            f"backbone {backbone}"
        )
    mismatches = []
    if task and found_task and found_task != task:
        mismatches.append(f"task {found_task}, this run is {task}")
    if backbone and found_backbone and found_backbone != backbone:
        mismatches.append(f"backbone {found_backbone}, this run is {backbone}")
    if mismatches:
        raise CheckpointError(
            f"{where} is a checkpoint of another run: it holds {'; '.join(mismatches)}. "
            "Choose the task and backbone it was trained with, or a checkpoint of this run."
        )


def _corrupt(where: str, error: Exception) -> CheckpointError:
    # torch's weights-only unpickler buries its reason under advice about weights_only=False,
    # which is the wrong advice for a damaged file
    message = str(error).split("WeightsUnpickler error:")[-1].strip()
    reason = message.splitlines()[0].split(". ")[0] if message else type(error).__name__
    return CheckpointError(
        f"{where} is not a readable checkpoint (truncated, corrupt, or not written by "
        f"torch.save): {reason}"
    )


def _imports_of_bare_pickle(path: Path) -> list[str] | None:
    """What a bare (non-zip) pickle imports, read with pickletools without unpickling it.

    GLOBAL carries `module name`; STACK_GLOBAL (protocol 4+) takes them from the two strings
    pushed before it, directly or from the memo. None when the bytes do not parse as a whole
    pickle (random bytes can look like a GLOBAL, so a partial parse proves nothing).
    """
    imports: list[str] = []
    strings: list[str] = []  # every string pushed, in order
    memo: dict[int, str | None] = {}
    last_string: str | None = None  # the string on top of the stack, if the last push was one
    try:
        with path.open("rb") as stream:
            for opcode, arg, _ in pickletools.genops(stream):
                pushed = None
                if opcode.name == "GLOBAL":
                    imports.append(arg.replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    imports.append(".".join(strings[-2:]))
                elif opcode.name == "MEMOIZE":
                    memo[len(memo)] = pushed = last_string
                elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed = last_string
                elif opcode.name in ("GET", "BINGET", "LONG_BINGET") and memo.get(arg):
                    pushed = memo[arg]
                    strings.append(pushed)
                elif isinstance(arg, str):
                    pushed = arg
                    strings.append(arg)
                last_string = pushed
    except (ValueError, EOFError, UnicodeDecodeError):
        return None
    return imports
