"""Kinds of zoo model that a task must treat differently, told by a note in the pretrained cfg.

A task asks `timm.get_pretrained_cfg(name).notes` instead of importing a model class, so that
tasks depend on the zoo only through timm's registry.
"""

import timm


def has_cfg_note(name: str, note: str) -> bool:
    """Whether the timm model `name` (a tag after a dot is ignored) carries `note` in its cfg."""
    cfg = timm.get_pretrained_cfg(name.split(".")[0])
    return cfg is not None and note in (cfg.notes or ())
