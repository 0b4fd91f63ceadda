"""Objects of several classes pasted with exact boxes onto crops of real photographs.

The photographs ship inside installed packages: scikit-image's data (astronaut, coffee, chelsea,
rocket, hubble_deep_field, immunohistochemistry, retina, colorwheel), scikit-learn's sample
images (china.jpg, flower.jpg) and matplotlib's sample data (grace_hopper.jpg). The objects are
drawn procedurally: textured discs, triangles, rings and crosses (solid, striped, checkered,
gradient or noisy fills), at varied scales, rotations and aspect ratios. Objects may occlude
each other; a placement that would hide too much of an earlier object is retried, and every
box is recomputed from the pixels still visible after all pastes, so boxes are exact.
"""

import functools

import cv2
import numpy as np

SHAPES = ("disc", "triangle", "ring", "cross")


@functools.cache
def load_photos() -> list[np.ndarray]:
    """RGB uint8 photographs bundled with scikit-image, scikit-learn and matplotlib."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [getattr(data, name)() for name in (
        "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
        "retina", "colorwheel",
    )]  # fmt: skip
    photos += list(load_sample_images().images)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        photos.append(np.asarray(im.convert("RGB")))
    return [np.ascontiguousarray(p[..., :3]) for p in photos]


def _polygon_mask(points: np.ndarray, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) boolean mask of `shape`, randomly rotated and stretched, touching the edges."""
    c = size / 2
    ring_angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(ring_angles), np.sin(ring_angles)], 1)
    match shape:
        case "disc":
            parts = [(circle, 1)]
        case "ring":
            parts = [(circle, 1), (circle * rng.uniform(0.45, 0.65), 0)]
        case "triangle":
            corners = np.deg2rad([90, 210, 330])
            parts = [(np.stack([np.cos(corners), np.sin(corners)], 1), 1)]
        case "cross":
            w = rng.uniform(0.25, 0.4)
            arm = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                            [-w, w], [-1, w], [-1, -w], [-w, -w]])  # fmt: skip
            parts = [(arm, 1)]
        case other:
            raise ValueError(f"unknown shape {other!r}; shapes: {', '.join(SHAPES)}")
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    stretch = np.diag([rng.uniform(0.7, 1.0), 1.0])
    transform = rotation @ stretch
    outline = parts[0][0] @ transform.T
    # scale so that the shape spans the canvas, whatever the rotation
    scale = (c - 0.5) / np.abs(outline).max()
    mask = np.zeros((size, size), bool)
    for points, value in parts:
        filled = _polygon_mask(points @ transform.T * scale + c, size)
        mask = mask | filled if value else mask & ~filled
    return mask


def texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float fill: solid, stripes, checks, gradient or noise in two colours,
    with a random brightness."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    match rng.integers(5):
        case 0:
            weight = np.zeros((size, size))
        case 1:
            angle, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
            weight = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period) > 0
        case 2:
            cell = rng.integers(3, 8)
            weight = (xs // cell + ys // cell) % 2
        case 3:
            angle = rng.uniform(0, 2 * np.pi)
            ramp = xs * np.cos(angle) + ys * np.sin(angle)
            weight = (ramp - ramp.min()) / max(np.ptp(ramp), 1)
        case _:
            weight = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
            weight = (weight - weight.min()) / max(np.ptp(weight), 1e-6)
    weight = np.asarray(weight, np.float32)[..., None]
    return (a * (1 - weight) + b * weight) * rng.uniform(0.8, 1.2)


class ShapesOnPhotos:
    """Generator of detection scenes: shapes with exact visible boxes on photo crops.

    Args:
        size: Side of the square scenes.
        classes: Shapes to draw (a subset of `SHAPES`), in label order.
        objects: Range (min, max) of objects per scene.
        object_scale: Range of an object's side as a fraction of the scene's.
        min_visible: Smallest visible fraction an earlier object may keep under later ones.
    """

    def __init__(self, size: int = 128, classes: tuple[str, ...] = SHAPES,
                 objects: tuple[int, int] = (1, 6), object_scale: tuple[float, float] = (0.1, 0.45),
                 min_visible: float = 0.4):  # fmt: skip
        unknown = set(classes) - set(SHAPES)
        if unknown:
            raise ValueError(f"unknown shapes {sorted(unknown)}; shapes: {', '.join(SHAPES)}")
        self.size, self.classes = size, tuple(classes)
        self.objects, self.object_scale, self.min_visible = objects, object_scale, min_visible
        self.photos = load_photos()

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """A random square crop of a random photograph, resized to the scene size."""
        photo = self.photos[rng.integers(len(self.photos))]
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = photo[y : y + side, x : x + side]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return cv2.resize(patch, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def scene(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One scene: `(image (S, S, 3) uint8, boxes (N, 4) float32 xyxy, labels (N,) int64)`."""
        image = self.crop(rng).astype(np.float32)
        owners = np.full((self.size, self.size), -1, np.int64)  # which object each pixel shows
        areas, labels = [], []
        for _ in range(rng.integers(self.objects[0], self.objects[1] + 1)):
            label = int(rng.integers(len(self.classes)))
            side = max(6, int(rng.uniform(*self.object_scale) * self.size))
            mask = shape_mask(self.classes[label], side, rng)
            placed = self._place(mask, owners, areas, rng)
            if placed is None:
                continue
            fill = texture(side, rng)
            full = np.zeros((self.size, self.size, 3), np.float32)
            y, x = placed
            full[y : y + side, x : x + side] = fill
            region = np.zeros_like(owners, bool)
            region[y : y + side, x : x + side] = mask
            image[region] = full[region]
            owners[region] = len(labels)
            areas.append(int(mask.sum()))
            labels.append(label)
        boxes = [self._visible_box(owners == i) for i in range(len(labels))]
        return (np.clip(image, 0, 255).astype(np.uint8), np.array(boxes, np.float32).reshape(-1, 4),
                np.array(labels, np.int64))  # fmt: skip

    def _place(self, mask: np.ndarray, owners: np.ndarray, areas: list[int],
               rng: np.random.Generator, tries: int = 10) -> tuple[int, int] | None:  # fmt: skip
        side = mask.shape[0]
        for _ in range(tries):
            y, x = rng.integers(0, self.size - side + 1, size=2)
            covered = owners[y : y + side, x : x + side][mask]
            hidden = np.bincount(covered[covered >= 0], minlength=len(areas))
            visible = np.bincount(owners[owners >= 0], minlength=len(areas)) - hidden
            if all(v >= self.min_visible * a for v, a in zip(visible, areas)):
                return int(y), int(x)
        return None

    @staticmethod
    def _visible_box(visible: np.ndarray) -> list[float]:
        ys, xs = np.nonzero(visible)
        return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges, xyxy

    def generate(self, n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """`n` scenes fixed by `seed`: images (n, S, S, 3) uint8, per-image boxes and labels."""
        rng = np.random.default_rng([seed, 3])
        images = np.empty((n, self.size, self.size, 3), np.uint8)
        boxes, labels = [], []
        for i in range(n):
            images[i], b, lab = self.scene(rng)
            boxes.append(b)
            labels.append(lab)
        return images, boxes, labels
