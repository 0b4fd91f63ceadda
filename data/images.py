"""Reading images from disk with errors that name the file."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class CorruptImageError(ValueError):
    """An image file that cannot be decoded."""


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def verify_images(paths: list[Path]) -> None:
    """Decode the header of every file; raise one error naming all that fail."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            bad.append(f"  {path}: {error}")
    if bad:
        listed = "\n".join(bad[:20]) + (
            f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        )
        raise CorruptImageError(
            f"{len(bad)} image file(s) cannot be read; remove or replace them:\n{listed}"
        )


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """Read an image as (H, W, C) uint8 with `channels` channels (1: grey-scale, 3: RGB)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error
    return array[..., None] if channels == 1 else array
