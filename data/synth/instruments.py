"""Surgical-instrument scenes synthesised one-to-many from a single tissue image.

Wang, Islam, Xu and Ren, `Rethinking Surgical Instrument Segmentation: A Background Image Can Be
All You Need`, MICCAI 2022, arXiv 2206.11804
(official code: https://github.com/lofrienger/Single_SurgicalScene_For_Segmentation).

The paper's recipe: one real background tissue image and a few instrument images are the seeds;
the background is augmented heavily, each instrument image is augmented with its mask, one (80%)
or two (20%) instruments are pasted onto a background, and training adds chained augmentation
mixing (AugMix with pixel-level operations only, so that the mask stays valid).

Here the background is a real image that ships with scikit-image (`retina`: a fundus photograph
whose red, vessel-laced tissue resembles an endoscopic view; or `immunohistochemistry`), and the
seed instruments are drawn procedurally: a dark shaft entering from the image border, an
articulated metallic wrist with pin grooves, and two serrated jaws, with cylinder shading and a
specular highlight. Every pixel is painted through the same part masks that become the labels,
so the labels are exact by construction: 0 background, 1 shaft, 2 wrist, 3 jaws.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import albumentations as A
import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

PART_NAMES = ("background", "shaft", "wrist", "jaws")
Background = Literal["retina", "immunohistochemistry"]


@functools.cache
def load_background(name: Background = "retina") -> np.ndarray:
    """The seed tissue image (H, W, 3) uint8, cropped to tissue only."""
    from skimage import data

    match name:
        case "retina":
            image = data.retina()
            # the square inscribed in the fundus disc: no black surround
            h, w = image.shape[:2]
            half = int(0.33 * min(h, w))
            return np.ascontiguousarray(
                image[h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half]
            )
        case "immunohistochemistry":
            return data.immunohistochemistry()
        case other:
            raise ValueError(
                f"background must be 'retina' or 'immunohistochemistry', got {other!r}"
            )


@dataclass
class Sprite:
    """An instrument on an empty canvas: `image` (H, W, 3) uint8 and `parts` (H, W) uint8 labels."""

    image: np.ndarray
    parts: np.ndarray


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _normal(direction: np.ndarray) -> np.ndarray:
    return np.array([-direction[1], direction[0]])


def _fill(polygon: np.ndarray, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    # 4 bits of sub-pixel precision keep thin jaws from snapping to the grid
    cv2.fillPoly(canvas, [np.round(polygon * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _quad(start: np.ndarray, direction: np.ndarray, length: float, half_start: float,
          half_end: float) -> np.ndarray:  # fmt: skip
    n, end = _normal(direction), start + direction * length
    return np.stack([start + n * half_start, end + n * half_end, end - n * half_end,
                     start - n * half_start])  # fmt: skip


class _Painter:
    """Paints parts onto a canvas: each part's mask sets both the colour and the label."""

    def __init__(self, size: int, light: float):
        self.size, self.light = size, light
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self.coords = np.stack([xs, ys], -1)
        self.image = np.zeros((size, size, 3), np.float32)
        self.parts = np.zeros((size, size), np.uint8)

    def cylinder(self, mask: np.ndarray, start: np.ndarray, direction: np.ndarray,
                 half_width: float, colour: np.ndarray, specular: float) -> np.ndarray:  # fmt: skip
        """Shade `mask` as a metal cylinder along `direction`; returns the along-axis coordinate."""
        rel = self.coords - start
        along = rel @ direction
        across = np.clip(rel @ _normal(direction) / half_width, -1, 1)
        body = 0.35 + 0.65 * np.sqrt(1 - across**2)
        highlight = specular * np.exp(-(((across - self.light) / 0.25) ** 2))
        shaded = colour * body[..., None] + highlight[..., None]
        self.image[mask] = shaded[mask]
        return along

    def disc(self, mask: np.ndarray, centre: np.ndarray, radius: float, colour: np.ndarray,
             specular: float) -> None:  # fmt: skip
        rel = (self.coords - centre) / radius
        r2 = np.clip((rel**2).sum(-1), 0, 1)
        body = 0.35 + 0.65 * np.sqrt(1 - r2)
        highlight = specular * np.exp(-(((rel[..., 0] - self.light) ** 2 + rel[..., 1] ** 2) / 0.1))
        self.image[mask] = (colour * body[..., None] + highlight[..., None])[mask]

    def label(self, mask: np.ndarray, part: int) -> None:
        self.parts[mask] = part


def draw_instrument(size: int, rng: np.random.Generator) -> Sprite:
    """A procedural robotic instrument entering from a random image border.

    Shaft (1): a dark cylinder from outside the frame. Wrist (2): a silver joint disc and a short
    segment bent against the shaft, with pin grooves. Jaws (3): two tapered serrated prongs,
    open by a random angle. Later parts are painted over earlier ones, labels included.
    """
    s = float(size)
    side, position = rng.integers(4), rng.uniform(0.15, 0.85) * s
    entry, inward = [
        (np.array([position, 0.0]), np.array([0.0, 1.0])),
        (np.array([s, position]), np.array([-1.0, 0.0])),
        (np.array([position, s]), np.array([0.0, -1.0])),
        (np.array([0.0, position]), np.array([1.0, 0.0])),
    ][side]
    axis = _rotate(inward, rng.uniform(-35, 35))
    radius = rng.uniform(0.05, 0.08) * s
    wrist_length, jaw_length = rng.uniform(1.4, 2.4) * radius, rng.uniform(2.0, 3.2) * radius
    reach = rng.uniform(0.5, 0.85) * s
    shaft_length = max(reach - wrist_length - jaw_length, 2 * radius)

    painter = _Painter(size, light=rng.uniform(-0.5, 0.5))
    grey = rng.uniform(25, 70)
    shaft_colour = np.array([grey, grey, grey * rng.uniform(1.0, 1.25)])
    start = entry - axis * 3 * radius  # begins outside the frame
    shaft = _fill(_quad(start, axis, shaft_length + 3 * radius, radius, radius), size)
    painter.cylinder(shaft, start, axis, radius, shaft_colour, specular=rng.uniform(60, 110))
    painter.label(shaft, 1)

    joint = entry + axis * shaft_length
    wrist_axis = _rotate(axis, rng.uniform(-35, 35))
    silver = rng.uniform(140, 190) * np.array([1.0, 1.0, rng.uniform(0.95, 1.08)])
    disc = np.linalg.norm(painter.coords - joint, axis=-1) <= 0.9 * radius
    segment = _fill(_quad(joint, wrist_axis, wrist_length, 0.8 * radius, 0.7 * radius), size)
    along = painter.cylinder(segment, joint, wrist_axis, 0.8 * radius, silver, specular=50)
    grooves = segment & (np.mod(along / (wrist_length / 3), 1.0) < 0.18)
    painter.image[grooves] *= 0.45
    painter.disc(disc & ~segment, joint, 0.9 * radius, silver * 0.9, specular=40)
    painter.label(disc | segment, 2)

    base = joint + wrist_axis * wrist_length
    opening = rng.uniform(0, 28)
    steel = rng.uniform(170, 215) * np.array([1.0, rng.uniform(0.92, 1.0), rng.uniform(0.8, 1.0)])
    for sign in (1, -1):
        jaw_axis = _rotate(wrist_axis, sign * opening)
        jaw_start = base + _normal(wrist_axis) * sign * 0.25 * radius
        jaw = _fill(_quad(jaw_start, jaw_axis, jaw_length, 0.5 * radius, 0.15 * radius), size)
        along = painter.cylinder(jaw, jaw_start, jaw_axis, 0.35 * radius, steel, specular=40)
        teeth = jaw & (np.sin(2 * np.pi * along / 2.5) > 0)
        painter.image[teeth] *= 0.8
        painter.label(jaw, 3)

    image = np.clip(painter.image + rng.normal(0, 4, painter.image.shape), 0, 255)
    image[painter.parts == 0] = 0
    return Sprite(image.astype(np.uint8), painter.parts)


def _blur(p: float = 1.0) -> A.OneOf:
    """One of Gaussian, box or median blur, as both of the paper's augmentations use."""
    blurs = [
        A.GaussianBlur(sigma_limit=(0.1, 3.0)),
        A.Blur(blur_limit=(3, 7)),
        A.MedianBlur(blur_limit=(3, 11)),
    ]
    return A.OneOf(blurs, p=p)


def background_augmentation(size: int, seed: int) -> A.Compose:
    """The paper's background augmentation (imgaug there), in albumentations.

    A random crop of the seed image first (ours is one large image, theirs a frame at training
    size), then flips, brightness, hue/saturation, multiplicative and contrast changes,
    perspective, cutout, affine warps, and up to two of blur/sharpen/emboss/noise/dropout.
    """
    return A.Compose(
        [
            A.RandomResizedCrop((size, size), scale=(0.08, 0.4)),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            A.RandomBrightnessContrast(brightness_limit=0.16, contrast_limit=0, p=0.3),
            A.HueSaturationValue(hue_shift_limit=20, sat_shift_limit=20, val_shift_limit=0, p=0.3),
            A.MultiplicativeNoise(multiplier=(0.5, 1.5), per_channel=True, p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=(-0.5, 1.0), p=0.3),
            A.Perspective(scale=(0.1, 0.2), border_mode=cv2.BORDER_REFLECT_101, p=0.3),
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(0.1, 0.3),
                hole_width_range=(0.1, 0.3),
                fill="random",
                p=0.15,
            ),
            A.Affine(
                scale=(0.8, 1.2),
                translate_percent=(-0.2, 0.2),
                rotate=(-45, 45),
                shear=(-20, 20),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.3,
            ),
            A.SomeOf(
                [
                    _blur(),
                    A.Sharpen(alpha=(0.0, 1.0), lightness=(0.75, 1.5)),
                    A.Emboss(alpha=(0.0, 1.0), strength=(0.0, 2.0)),
                    A.GaussNoise(std_range=(0.0, 0.05)),
                    A.PixelDropout(dropout_prob=0.05),
                ],
                n=2,
                p=0.5,
            ),
        ],
        seed=seed,
    )


def foreground_augmentation(seed: int) -> A.Compose:
    """The paper's instrument augmentation: flips, zoom crop, perspective, affine, blur; masks move too."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            A.CropAndPad(percent=(-0.15, 0.0), p=0.2),
            A.Perspective(scale=(0.1, 0.2), p=0.2),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), rotate=(-45, 45), p=0.6),
            _blur(p=0.4),
        ],
        seed=seed,
    )


def paste(background: np.ndarray, sprites: list[Sprite]) -> tuple[np.ndarray, np.ndarray]:
    """Paste sprites in order (later ones occlude earlier ones); the labels follow the pixels."""
    image, mask = background.copy(), np.zeros(background.shape[:2], np.uint8)
    for sprite in sprites:
        inside = sprite.parts > 0
        image[inside] = sprite.image[inside]
        mask[inside] = sprite.parts[inside]
    return image, mask


class InstrumentScenes:
    """Generator of (image, mask) scenes from one background and a few seed instruments.

    Args:
        size: Side of the square scenes.
        background: The seed tissue image (see `load_background`).
        seed_instruments: How many instruments are drawn as seeds for the training scenes.
        second_instrument_p: Chance of a second instrument in a scene (the paper's 20%).
        seed: Seed of the seed instruments.
    """

    def __init__(
        self,
        size: int = 128,
        background: Background = "retina",
        seed_instruments: int = 12,
        second_instrument_p: float = 0.2,
        seed: int = 0,
    ):
        self.size, self.second_instrument_p = size, second_instrument_p
        self.background = load_background(background)
        rng = np.random.default_rng([seed, 1])
        self.seeds = [draw_instrument(size, rng) for _ in range(seed_instruments)]

    def generate(self, n: int, seed: int, novel: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`n` scenes `(images (n, S, S, 3) uint8, masks (n, S, S) uint8)`, fixed by `seed`.

        With `novel=False` (training) each scene pastes augmented copies of the seed
        instruments, as the paper does. With `novel=True` (validation, test) every scene gets
        freshly drawn instruments, never seen in training.
        """
        rng = np.random.default_rng([seed, 2])
        backgrounds = background_augmentation(self.size, seed)
        instruments = foreground_augmentation(seed + 1)
        images = np.empty((n, self.size, self.size, 3), np.uint8)
        masks = np.empty((n, self.size, self.size), np.uint8)
        for i in range(n):
            count = 2 if rng.random() < self.second_instrument_p else 1
            if novel:
                sprites = [draw_instrument(self.size, rng) for _ in range(count)]
            else:
                chosen = rng.choice(len(self.seeds), size=count, replace=False)
                sprites = [self._augment(self.seeds[j], instruments) for j in chosen]
            images[i], masks[i] = paste(backgrounds(image=self.background)["image"], sprites)
        return images, masks

    @staticmethod
    def _augment(sprite: Sprite, transform: A.Compose) -> Sprite:
        out = transform(image=sprite.image, mask=sprite.parts)
        parts = out["mask"]
        image = out["image"]
        image[parts == 0] = 0
        return Sprite(image, parts)


# AugMix's pixel-level operations at `level` in (0, severity]; the constants are AugMix's
def _posterize(image: Image.Image, level: float) -> Image.Image:
    return ImageOps.posterize(image, 4 - int(level * 4 / 10))


def _solarize(image: Image.Image, level: float) -> Image.Image:
    return ImageOps.solarize(image, 256 - int(level * 256 / 10))


def _enhance(kind: type) -> Callable[[Image.Image, float], Image.Image]:
    def op(image: Image.Image, level: float) -> Image.Image:
        return kind(image).enhance(level * 1.8 / 10 + 0.1)

    return op


PIXEL_OPERATIONS = (
    lambda image, _: ImageOps.autocontrast(image),
    lambda image, _: ImageOps.equalize(image),
    _posterize,
    _solarize,
    _enhance(ImageEnhance.Color),
    _enhance(ImageEnhance.Contrast),
    _enhance(ImageEnhance.Brightness),
    _enhance(ImageEnhance.Sharpness),
)


class AugMix(A.ImageOnlyTransform):
    """Chained augmentation mixing with pixel-level operations only (masks and boxes stay valid).

    Hendrycks et al., AugMix (arXiv 1912.02781), as the surgical paper uses it for segmentation
    (its operation set "II": autocontrast, equalize, posterize, solarize, colour, contrast,
    brightness, sharpness). `width` chains of 1-3 random operations (`depth=-1`) are mixed with
    Dirichlet(alpha) weights, then blended with the original by a Beta(alpha, alpha) factor.
    torchvision's AugMix includes geometric operations (shear, translate, rotate) that would move
    the image but not its mask, hence this transform.

    Args:
        severity: Upper bound of the operations' strength, 1-10.
        width: Number of chains mixed.
        depth: Operations per chain; -1 draws 1-3 per chain.
        alpha: Dirichlet and Beta concentration.
        p: Probability of applying.
    """

    def __init__(self, severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0,
                 p: float = 1.0):  # fmt: skip
        super().__init__(p=p)
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        rng = self.random_generator
        grey = img.ndim == 3 and img.shape[-1] == 1
        pil = Image.fromarray(img[..., 0] if grey else img)
        weights = rng.dirichlet([self.alpha] * self.width)
        mixing = rng.beta(self.alpha, self.alpha)
        mix = np.zeros(img.shape, np.float32)
        for weight in weights:
            chained = pil
            for _ in range(self.depth if self.depth > 0 else int(rng.integers(1, 4))):
                operation = PIXEL_OPERATIONS[int(rng.integers(len(PIXEL_OPERATIONS)))]
                chained = operation(chained, rng.uniform(0.1, self.severity))
            array = np.asarray(chained, np.float32)
            mix += weight * (array[..., None] if grey else array)
        mixed = (1 - mixing) * img.astype(np.float32) + mixing * mix
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("severity", "width", "depth", "alpha")
