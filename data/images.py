"""Reading images from disk with errors that name the file."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# What PIL raises for a file it cannot decode (DecompressionBombError: a header that claims an
# absurd size, the sign of a corrupt or hostile file)
DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError)


class CorruptImageError(DataError):
    """An image file that cannot be decoded."""


class ImageModeError(DataError):
    """An image that decodes but holds pixels the reader does not take (16-bit, float)."""


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def is_wide_mode(mode: str) -> bool:
    """32-bit integer, 16-bit and floating-point modes: PIL's `convert` to 8 bits clips them."""
    return mode.startswith(("I", "F"))


def check_image_mode(path: Path, mode: str) -> None:
    if is_wide_mode(mode):
        raise ImageModeError(
            f"{path}: {mode} pixels (16-bit, 32-bit or floating point) would be clipped to 8 bits; "
            "convert the image to 8-bit grey or RGB"
        )


def _listed(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
    return "\n".join(lines[:20]) + more


def verify_images(paths: list[Path], masks: bool = False) -> None:
    """Check the header of every file; raise one error naming all that fail.

    Cheap (no pixel is decoded), so it runs before training on every file. An image must hold
    8-bit pixels; a mask (`masks=True`) may hold 16- or 32-bit class indices, not floats.
    """
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                mode = image.mode
                image.verify()
            if masks and mode.startswith("F"):
                bad.append(f"  {path}: floating-point ({mode}) mask; save class indices")
            elif not masks and is_wide_mode(mode):
                bad.append(f"  {path}: {mode} pixels; convert the image to 8-bit grey or RGB")
        except DECODE_ERRORS as error:
            bad.append(f"  {path}: {error}")
    if bad:
        raise CorruptImageError(
            f"{len(bad)} image file(s) cannot be read; remove or replace them:\n{_listed(bad)}"
        )


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """Read an image as (H, W, C) uint8 with `channels` channels (1: grey-scale, 3: RGB)."""
    try:
        with Image.open(path) as image:
            check_image_mode(path, image.mode)
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image)
    except DECODE_ERRORS as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error
    return array[..., None] if channels == 1 else array


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone."""
    try:
        with Image.open(path) as image:
            return image.size
    except DECODE_ERRORS as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error
