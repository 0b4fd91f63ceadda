"""Synthetic pedestrians seen by synthetic cameras, written in the Market-1501 layout.

An identity is a person drawn procedurally: body height and build, skin and hair, an upper garment
(colour, sleeve length and a pattern: plain, stripes, checks, two-tone or a chest logo), lower
garment (trousers, shorts or skirt), shoes, and optionally a hat and a bag (backpack, shoulder
bag or handbag). A camera sees the person from the front, the back or the side (the logo shows
only from the front, a backpack mostly from the back), with its own illumination and colour
cast, scale, blur and occlusion, on crops of photographs that ship with scikit-image,
scikit-learn and matplotlib. Labels (identity, camera) are exact by construction.

Two camera domains share the identity model but nothing else: domain `a` and domain `b` differ in
cameras, lighting, colour casts, viewpoint mix and background photographs, the cross-domain
setting of OSNet-AIN (Zhou et al., TPAMI 2021, arXiv 1910.06827) without target data.

`write_market1501(root, ...)` writes `bounding_box_train/`, `query/` and `bounding_box_test/`
with Market-1501 names (`0002_c1s1_000451_00.jpg`), distractors (pid 0) and junk (pid -1,
a person cut off by the frame), so the real reader is the code path that runs.
"""

import colorsys
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .paste import load_photos

VIEWS = ("front", "back", "side")


@dataclass
class Camera:
    """One camera: its light, colour cast, viewpoint mix, framing, blur and backgrounds."""

    gain: float
    cast: tuple[float, float, float]
    views: tuple[float, float, float]
    scale: tuple[float, float]
    blur: float
    occlusion: float
    photos: tuple[int, ...]


def make_cameras(domain: str, count: int) -> list[Camera]:
    """The `count` cameras of `domain` ('a': daylight, 'b': dim, warm or bluish light)."""
    rng = np.random.default_rng({"a": 11, "b": 23}[domain])
    photo_count = len(load_photos())
    # the domains use disjoint background photographs
    pool = np.arange(photo_count)
    own = pool[pool % 2 == 0] if domain == "a" else pool[pool % 2 == 1]
    cameras = []
    for _ in range(count):
        if domain == "a":
            gain = rng.uniform(0.85, 1.15)
            cast = tuple(rng.uniform(0.9, 1.1, 3))
        else:
            gain = rng.uniform(0.55, 0.8)
            warm = rng.random() < 0.5
            cast = (1.2, 1.0, 0.75) if warm else (0.8, 0.95, 1.25)
            cast = tuple(np.array(cast) * rng.uniform(0.95, 1.05, 3))
        views = rng.dirichlet(np.ones(3) * 2)
        cameras.append(
            Camera(
                gain=float(gain),
                cast=tuple(float(c) for c in cast),
                views=tuple(float(v) for v in views),
                scale=(0.78, 0.95) if rng.random() < 0.5 else (0.88, 1.0),
                blur=float(rng.uniform(0.0, 1.2 if domain == "a" else 1.6)),
                occlusion=float(rng.uniform(0.05, 0.25)),
                photos=tuple(int(p) for p in rng.choice(own, size=min(3, len(own)), replace=False)),
            )
        )
    return cameras


def _colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.3, 1.0)) -> tuple:
    h = rng.random()
    s = rng.uniform(*saturation)
    v = rng.uniform(0.25, 1.0)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


@dataclass
class Person:
    """The look of one identity: everything a camera cannot change."""

    height: float
    build: float
    skin: tuple
    hair: tuple
    long_hair: bool
    upper: tuple
    upper_second: tuple
    pattern: str
    long_sleeves: bool
    lower: tuple
    lower_kind: str
    shoes: tuple
    hat: tuple | None
    bag: str
    bag_colour: tuple
    extras: dict = field(default_factory=dict)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Person":
        tone = rng.uniform(0.3, 1.0)
        skin = tuple(int(c) for c in np.array([224, 172, 138]) * tone + np.array([30, 20, 10]))
        return cls(
            height=rng.uniform(0.88, 1.0),
            build=rng.uniform(0.8, 1.2),
            skin=skin,
            hair=_colour(rng, (0.2, 0.8)) if rng.random() < 0.2 else
            tuple(int(c) for c in rng.uniform(10, 120) * np.array([1.0, 0.8, 0.6])),
            long_hair=bool(rng.random() < 0.4),
            upper=_colour(rng),
            upper_second=_colour(rng),
            pattern=str(rng.choice(["plain", "hstripes", "vstripes", "checks", "two_tone", "logo"])),
            long_sleeves=bool(rng.random() < 0.5),
            lower=_colour(rng, (0.0, 0.8)),
            lower_kind=str(rng.choice(["trousers", "trousers", "shorts", "skirt"])),
            shoes=_colour(rng, (0.0, 0.5)),
            hat=_colour(rng) if rng.random() < 0.25 else None,
            bag=str(rng.choice(["none", "none", "backpack", "shoulder", "handbag"])),
            bag_colour=_colour(rng, (0.2, 0.9)),
        )  # fmt: skip


def _fill_pattern(canvas: np.ndarray, mask: np.ndarray, person: Person, scale: int) -> None:
    """Paint the upper garment (inside `mask`) with the person's colours and pattern."""
    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w]
    second = np.zeros((h, w), bool)
    step = max(2, scale)
    match person.pattern:
        case "hstripes":
            second = (yy // step) % 2 == 1
        case "vstripes":
            second = (xx // step) % 2 == 1
        case "checks":
            second = ((yy // step) + (xx // step)) % 2 == 1
        case "two_tone":
            rows = np.nonzero(mask.any(1))[0]
            if len(rows):
                second = yy > (rows[0] + rows[-1]) / 2
    canvas[mask] = person.upper
    canvas[mask & second] = person.upper_second


def draw_person(person: Person, view: str, size: tuple[int, int], rng: np.random.Generator):
    """The person on a transparent canvas of `size` (H, W): (RGB uint8, alpha mask)."""
    h, w = size
    canvas = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    total = person.height * h * 0.96
    top = int(h - total) + rng.integers(-1, 2)
    cx = w / 2 + rng.uniform(-0.03, 0.03) * w
    side = view == "side"
    half_width = w * 0.19 * person.build * (0.65 if side else 1.0)
    head_r = total * 0.065
    y_neck = top + 2 * head_r
    y_hip = top + total * 0.5
    y_knee = top + total * 0.74
    y_foot = top + total

    def poly(points, colour, target=canvas):
        pts = np.round(np.array(points) * 4).astype(np.int32)
        cv2.fillPoly(target, [pts], colour, cv2.LINE_AA, shift=2)
        cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA, shift=2)

    def ellipse(center, axes, colour):
        c = tuple(int(round(v * 4)) for v in center)
        a = tuple(max(1, int(round(v * 4))) for v in axes)
        cv2.ellipse(canvas, c, a, 0, 0, 360, colour, -1, cv2.LINE_AA, shift=2)
        cv2.ellipse(alpha, c, a, 0, 0, 360, 255, -1, cv2.LINE_AA, shift=2)

    # legs and shoes (side view: one leg forward)
    leg_w = half_width * 0.42
    stride = rng.uniform(0.05, 0.16) * w if side else 0.0
    for sign, shift in ((-1, -stride), (1, stride)):
        x_hip = cx + (0 if side else sign * half_width * 0.5)
        x_foot = x_hip + shift
        lower_end = {"trousers": y_foot - head_r * 0.4, "shorts": y_knee - total * 0.05,
                     "skirt": y_hip}[person.lower_kind]  # fmt: skip
        poly([(x_hip - leg_w, y_hip), (x_hip + leg_w, y_hip), (x_foot + leg_w * 0.8, y_foot),
              (x_foot - leg_w * 0.8, y_foot)], person.skin)  # fmt: skip
        if person.lower_kind != "skirt":
            t = (lower_end - y_hip) / (y_foot - y_hip)
            x_end = x_hip + shift * t
            poly([(x_hip - leg_w * 1.05, y_hip), (x_hip + leg_w * 1.05, y_hip),
                  (x_end + leg_w * 0.95, lower_end), (x_end - leg_w * 0.95, lower_end)],
                 person.lower)  # fmt: skip
        ellipse((x_foot + (leg_w * 0.4 if side else 0), y_foot - head_r * 0.3),
                (leg_w * (1.4 if side else 1.0), head_r * 0.35), person.shoes)  # fmt: skip
    if person.lower_kind == "skirt":
        poly([(cx - half_width * 0.95, y_hip - total * 0.02), (cx + half_width * 0.95,
              y_hip - total * 0.02), (cx + half_width * 1.25, y_knee), (cx - half_width * 1.25,
              y_knee)], person.lower)  # fmt: skip
    # backpack behind the torso when seen from the front
    if person.bag == "backpack" and view == "front":
        poly([(cx - half_width * 1.1, y_neck + head_r * 0.5), (cx + half_width * 1.1,
              y_neck + head_r * 0.5), (cx + half_width * 1.1, y_hip - total * 0.1),
              (cx - half_width * 1.1, y_hip - total * 0.1)], person.bag_colour)  # fmt: skip
    # torso and arms in the upper garment
    upper = np.zeros((h, w), np.uint8)
    torso = [(cx - half_width, y_neck), (cx + half_width, y_neck),
             (cx + half_width * 0.9, y_hip), (cx - half_width * 0.9, y_hip)]  # fmt: skip
    arm_w = half_width * 0.3
    arms = [] if side else [-1, 1]
    sleeve_end = y_hip if person.long_sleeves else y_neck + total * 0.12
    pieces = [torso]
    for sign in arms:
        x0 = cx + sign * (half_width + arm_w * 0.6)
        pieces.append([(x0 - arm_w, y_neck + 1), (x0 + arm_w, y_neck + 1),
                       (x0 + arm_w, sleeve_end), (x0 - arm_w, sleeve_end)])  # fmt: skip
        if not person.long_sleeves:  # forearms
            poly([(x0 - arm_w * 0.8, sleeve_end), (x0 + arm_w * 0.8, sleeve_end),
                  (x0 + arm_w * 0.7, y_hip), (x0 - arm_w * 0.7, y_hip)], person.skin)  # fmt: skip
        ellipse((x0, y_hip + arm_w * 0.5), (arm_w * 0.8, arm_w), person.skin)
    if side:  # one arm swinging in front of the torso
        swing = rng.uniform(-0.1, 0.1) * w
        pieces.append([(cx - arm_w, y_neck + 2), (cx + arm_w, y_neck + 2),
                       (cx + swing + arm_w, sleeve_end), (cx + swing - arm_w, sleeve_end)])  # fmt: skip
    for piece in pieces:
        pts = np.round(np.array(piece) * 4).astype(np.int32)
        cv2.fillPoly(upper, [pts], 1, cv2.LINE_8, shift=2)
        cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA, shift=2)
    _fill_pattern(canvas, upper.astype(bool), person, max(2, int(h / 28)))
    if person.pattern == "logo" and view == "front":
        ellipse((cx, y_neck + total * 0.12), (half_width * 0.35, half_width * 0.35),
                person.upper_second)  # fmt: skip
    # head, hair, hat
    head_c = (cx + (head_r * 0.2 if side else 0), top + head_r)
    if person.long_hair:
        poly([(cx - head_r * 1.1, top + head_r), (cx + head_r * 1.1, top + head_r),
              (cx + head_r * 1.2, y_neck + head_r * 1.6), (cx - head_r * 1.2,
              y_neck + head_r * 1.6)], person.hair)  # fmt: skip
    ellipse(head_c, (head_r * 0.85, head_r), person.skin if view != "back" else person.hair)
    ellipse((head_c[0], head_c[1] - head_r * 0.45), (head_r * 0.9, head_r * 0.6), person.hair)
    if person.hat is not None:
        ellipse((head_c[0], head_c[1] - head_r * 0.7), (head_r * 1.0, head_r * 0.45), person.hat)
        brim = 1 if view != "back" else -1
        ellipse((head_c[0] + (brim * head_r * 0.6 if side else 0), head_c[1] - head_r * 0.45),
                (head_r * (1.3 if side else 1.1), head_r * 0.15), person.hat)  # fmt: skip
    # bags
    match person.bag:
        case "backpack" if view != "front":
            depth = half_width * (0.6 if side else 0.85)
            x0 = cx - half_width * 0.9 - depth * 0.3 if side else cx
            poly([(x0 - depth, y_neck + head_r * 0.6), (x0 + depth, y_neck + head_r * 0.6),
                  (x0 + depth, y_hip - total * 0.08), (x0 - depth, y_hip - total * 0.08)],
                 person.bag_colour)  # fmt: skip
        case "shoulder" | "handbag":
            strap_x = cx + half_width * 0.8 * (1 if view != "back" else -1)
            y_bag = y_hip - total * 0.05 if person.bag == "shoulder" else y_hip + total * 0.05
            cv2.line(canvas, (int(cx - half_width * 0.6), int(y_neck)), (int(strap_x), int(y_bag)),
                     person.bag_colour, 1, cv2.LINE_AA)  # fmt: skip
            ellipse(
                (strap_x, y_bag + head_r * 0.6), (head_r * 0.9, head_r * 0.7), person.bag_colour
            )
    return canvas, alpha


def _background(camera: Camera, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    photos = load_photos()
    photo = photos[camera.photos[rng.integers(len(camera.photos))]]
    h, w = size
    ph, pw = photo.shape[:2]
    crop_h = int(min(ph, pw * 2) * rng.uniform(0.3, 0.8))
    crop_w = max(2, crop_h // 2)
    y, x = rng.integers(0, ph - crop_h + 1), rng.integers(0, pw - crop_w + 1)
    return cv2.resize(photo[y : y + crop_h, x : x + crop_w], (w, h), interpolation=cv2.INTER_AREA)


def render(
    person: Person,
    camera: Camera,
    size: tuple[int, int],
    rng: np.random.Generator,
    cut_off: bool = False,
) -> np.ndarray:
    """One (H, W, 3) uint8 shot of `person` by `camera`; `cut_off` frames a junk image."""
    h, w = size
    view = VIEWS[rng.choice(3, p=camera.views)]
    figure, alpha = draw_person(person, view, size, rng)
    scale = rng.uniform(*camera.scale)
    matrix = np.float32([[scale, 0, (1 - scale) * w / 2 + rng.uniform(-0.06, 0.06) * w],
                         [0, scale, (1 - scale) * h + rng.uniform(-0.03, 0.0) * h]])  # fmt: skip
    if cut_off:  # most of the person outside the frame: a junk detection
        matrix[1, 2] += h * rng.uniform(0.5, 0.7) * rng.choice([-1, 1])
    figure = cv2.warpAffine(figure, matrix, (w, h))
    alpha = cv2.warpAffine(alpha, matrix, (w, h))[..., None] / 255.0
    image = _background(camera, size, rng) * (1 - alpha) + figure * alpha
    if rng.random() < camera.occlusion:  # something between camera and person
        occluder = _background(camera, size, rng)
        top = int(h * rng.uniform(0.55, 0.8))
        image[top:] = occluder[top:]
    light = camera.gain * rng.uniform(0.9, 1.1) * np.array(camera.cast)
    image = np.clip(image * light, 0, 255)
    sigma = camera.blur * rng.uniform(0.6, 1.2)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_market1501(
    root: str | Path,
    train_ids: int = 300,
    test_ids: int = 300,
    cameras: int = 6,
    images_per_camera: tuple[int, int] = (1, 3),
    distractors: int = 100,
    junk_fraction: float = 0.02,
    size: tuple[int, int] = (128, 64),
    domain: str = "a",
    seed: int = 0,
) -> Path:
    """Write a synthetic data set in the Market-1501 layout under `root`; return `root`.

    Train and test identities are disjoint. Each identity is seen by 2 to `cameras` cameras,
    `images_per_camera` (min, max) shots each; for a test identity, one shot of each of up to
    two cameras goes to `query/`, the rest to `bounding_box_test/` with `distractors` extra
    people (pid 0) and junk shots (pid -1). Nothing is rewritten when `root` already holds a
    finished set of the same parameters; a half-written folder is replaced.
    """
    root = Path(root)
    spec = dict(train_ids=train_ids, test_ids=test_ids, cameras=cameras, domain=domain,
                images_per_camera=list(images_per_camera), distractors=distractors,
                junk_fraction=junk_fraction, size=list(size), seed=seed, version=1)  # fmt: skip
    stamp = root / "synthetic.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return root
    if root.exists() and any(root.iterdir()) and not stamp.is_file():
        # not a set this function wrote (it leaves synthetic.json): maybe a user's own folder
        raise FileExistsError(
            f"{root} holds files but no synthetic.json: write synthetic pedestrians into a new "
            "or empty folder"
        )
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp / folder).mkdir(parents=True)
    rng = np.random.default_rng(seed + {"a": 0, "b": 10_000}[domain])
    rigs = make_cameras(domain, cameras)
    frame = 0

    def save(folder: str, pid: int, cam: int, image: np.ndarray) -> None:
        nonlocal frame
        frame += 1
        name = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg" if pid >= 0 else \
            f"-1_c{cam + 1}s1_{frame:06d}_00.jpg"  # fmt: skip
        cv2.imwrite(str(tmp / folder / name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])

    for pid in range(1, train_ids + test_ids + 1):
        person = Person.sample(rng)
        seen = rng.choice(cameras, size=rng.integers(2, cameras + 1), replace=False)
        queries = set(seen[:2].tolist()) if pid > train_ids else set()
        for cam in seen.tolist():
            shots = rng.integers(images_per_camera[0], images_per_camera[1] + 1)
            for shot in range(shots + (cam in queries)):
                image = render(person, rigs[cam], size, rng)
                if pid <= train_ids:
                    save("bounding_box_train", pid, cam, image)
                else:
                    save("query" if shot == 0 and cam in queries else "bounding_box_test",
                         pid, cam, image)  # fmt: skip
            if pid > train_ids and rng.random() < junk_fraction * 10:
                save("bounding_box_test", -1, cam, render(person, rigs[cam], size, rng, True))
    for _ in range(distractors):
        person = Person.sample(rng)
        cam = int(rng.integers(cameras))
        save("bounding_box_test", 0, cam, render(person, rigs[cam], size, rng))
    (tmp / "synthetic.json").write_text(json.dumps(spec))
    # parallel test workers may write the same set: the first finished copy wins
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        shutil.rmtree(tmp, ignore_errors=True)
        return root
    shutil.rmtree(root, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (stamp.is_file() and json.loads(stamp.read_text()) == spec):
            raise
    return root
