"""Synthetic laparoscopic cholecystectomy videos with exact per-frame phase and tool labels.

The seven phases and seven tools of Cholec80 (Twinanda et al., `EndoNet: A Deep Architecture for
Recognition Tasks on Laparoscopic Videos`, IEEE TMI 2017, arXiv 1602.03012) are rendered in their
surgical order, each phase of varying length with its own instruments:

    Preparation              grasper
    CalotTriangleDissection  grasper, hook (cautery smoke)
    ClippingCutting          grasper, clipper, scissors; clips appear on the tissue
    GallbladderDissection    grasper, hook (cautery smoke); the clips stay in view
    GallbladderPackaging     grasper, specimen bag
    CleaningCoagulation      irrigator, bipolar; heavy haze
    GallbladderRetraction    grasper, specimen bag pulled out of view, camera zooms out

Two pairs of phases share their tools (the two dissections; packaging and retraction): frames
tell them apart only by what came before (the clips) or by motion, which is what a temporal model
is for. Instruments are the procedural ones of `data.synth.instruments`, one drawing per tool and
video, tinted per tool, entering and leaving in runs and moving with phase-typical motion. The
tissue is a real photograph bundled with scikit-image, seen through a drifting, zooming camera;
smoke-like haze and lens occlusions hide frames now and then. Labels are exact by construction:
a tool is labelled present in exactly the frames it is painted in.

`write_cholec80` writes videos in the Cholec80 layout (`videos/videoNN.mp4` through PyAV,
`phase_annotations/videoNN-phase.txt` one row per frame, `tool_annotations/videoNN-tool.txt` one
row per second), so that the real reader runs on them.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .instruments import Background, Sprite, draw_instrument, load_background

PHASES = (
    "Preparation",
    "CalotTriangleDissection",
    "ClippingCutting",
    "GallbladderDissection",
    "GallbladderPackaging",
    "CleaningCoagulation",
    "GallbladderRetraction",
)
TOOLS = ("Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag")

# share of the video each phase takes on average (Cholec80-like: the dissections dominate)
PHASE_SHARE = np.array([0.07, 0.30, 0.09, 0.26, 0.08, 0.10, 0.10])
# per phase: tool -> chance the tool is in view at any moment (runs of presence, see `_runs`)
PHASE_TOOLS: tuple[dict[str, float], ...] = (
    {"Grasper": 0.8},
    {"Grasper": 0.8, "Hook": 0.85},
    {"Grasper": 0.7, "Clipper": 0.7, "Scissors": 0.5},
    {"Grasper": 0.8, "Hook": 0.85},
    {"Grasper": 0.7, "SpecimenBag": 0.9},
    {"Irrigator": 0.8, "Bipolar": 0.6},
    {"Grasper": 0.8, "SpecimenBag": 0.9},
)
# tint of each tool's metal parts (RGB multipliers), so that tools differ at a glance
TOOL_TINT = {
    "Grasper": (0.6, 1.25, 0.6),
    "Bipolar": (0.55, 0.7, 1.35),
    "Hook": (1.3, 1.2, 0.45),
    "Scissors": (1.3, 0.55, 1.2),
    "Clipper": (0.5, 1.2, 1.3),
    "Irrigator": (1.15, 1.15, 1.15),
}
# phase-typical motion: (amplitude as a fraction of the frame, period in seconds)
PHASE_MOTION = ((0.05, 9.0), (0.10, 2.5), (0.04, 6.0), (0.05, 8.0), (0.06, 5.0), (0.08, 3.0),
                (0.12, 12.0))  # fmt: skip


@dataclass
class SyntheticVideo:
    """One rendered video: `frames` (N, S, S, 3) uint8 RGB, `phases` (N,), `tools` (N, 7) 0/1."""

    frames: np.ndarray
    phases: np.ndarray
    tools: np.ndarray
    fps: float


def _phase_lengths(total: int, rng: np.random.Generator, minimum: int) -> np.ndarray:
    shares = rng.dirichlet(PHASE_SHARE * 100)
    lengths = np.maximum(np.round(shares * total).astype(int), minimum)
    lengths[np.argmax(lengths)] += total - lengths.sum()  # exact total, the longest absorbs it
    return lengths


def _runs(length: int, presence: float, mean_run: float, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 sequence of on/off runs with `presence` of the time on, runs `mean_run` long."""
    out = np.zeros(length, bool)
    on = rng.random() < presence
    t = 0
    while t < length:
        mean = mean_run * (presence if on else 1 - presence) / 0.5
        run = max(1, int(rng.exponential(max(mean, 1.0))))
        out[t : t + run] = on
        t += run
        on = not on
    return out


def _tinted(sprite: Sprite, tint: tuple[float, float, float]) -> Sprite:
    image = sprite.image.astype(np.float32)
    metal = sprite.parts >= 2  # wrist and jaws carry the colour; shafts stay dark
    image[metal] *= np.asarray(tint, np.float32)
    return Sprite(np.clip(image, 0, 255).astype(np.uint8), sprite.parts)


def _bag(size: int, rng: np.random.Generator) -> Sprite:
    """A pale, translucent-looking specimen bag: an ellipse with folds, drawn on its own canvas."""
    image = np.zeros((size, size, 3), np.uint8)
    parts = np.zeros((size, size), np.uint8)
    centre = (int(size * rng.uniform(0.35, 0.65)), int(size * rng.uniform(0.35, 0.65)))
    axes = (int(size * rng.uniform(0.18, 0.26)), int(size * rng.uniform(0.12, 0.18)))
    angle = float(rng.uniform(0, 180))
    cv2.ellipse(parts, centre, axes, angle, 0, 360, 1, -1)
    colour = np.array([225, 230, 205]) * rng.uniform(0.85, 1.0)
    image[parts > 0] = colour.astype(np.uint8)
    for _ in range(4):  # folds
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        cv2.line(image, (x0, y0), (x0 + int(size * 0.2), y0 + int(size * 0.1)), (160, 165, 140), 1)
    image[parts == 0] = 0
    return Sprite(image, parts)


def _warp(sprite: Sprite, dx: float, dy: float, angle: float) -> Sprite:
    size = sprite.parts.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    image = cv2.warpAffine(sprite.image, matrix, (size, size), flags=cv2.INTER_LINEAR)
    parts = cv2.warpAffine(sprite.parts, matrix, (size, size), flags=cv2.INTER_NEAREST)
    return Sprite(image, parts)


def render_video(
    seconds: float,
    rng: np.random.Generator,
    size: int = 64,
    fps: float = 5.0,
    background: Background = "retina",
) -> SyntheticVideo:
    """Render one synthetic cholecystectomy of about `seconds` seconds at `fps` frames/s."""
    n = int(round(seconds * fps))
    # phases last at least 3 s, or a 14th of a short video
    lengths = _phase_lengths(n, rng, minimum=max(1, min(int(3 * fps), n // (2 * len(PHASES)))))
    phases = np.repeat(np.arange(len(PHASES)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    tools = np.zeros((n, len(TOOLS)), bool)
    for p, (start, length) in enumerate(zip(starts, lengths)):
        for name, presence in PHASE_TOOLS[p].items():
            tools[start : start + length, TOOLS.index(name)] = _runs(length, presence, 6 * fps, rng)

    # one drawing per tool for the whole video, as one instrument set is used per operation
    sprites = {
        name: _bag(size, rng) if name == "SpecimenBag" else _tinted(draw_instrument(size, rng), tint)
        for name, tint in {**TOOL_TINT, "SpecimenBag": (1, 1, 1)}.items()
    }  # fmt: skip
    phase_offset = rng.uniform(0, 2 * np.pi, (len(TOOLS), 2))

    tissue = load_background(background)
    height = tissue.shape[0]
    # the camera: a slow random walk over the tissue plus a zoom that widens in retraction
    walk = np.cumsum(rng.normal(0, 0.004, (n, 2)), 0)
    walk = 0.5 + 0.18 * np.tanh(walk / 0.2)
    zoom = np.where(phases == 6, 0.5 + 0.25 * (np.arange(n) - starts[6]) / max(1, lengths[6]), 0.4)
    clip_points = rng.uniform(0.3, 0.7, (4, 2))
    clipping_end = starts[2] + lengths[2]

    haze_level = np.where(phases == 5, 0.55, 0.0)
    hook = tools[:, TOOLS.index("Hook")]
    haze_level = np.maximum(haze_level, hook * (rng.random(n) < 0.15) * 0.35)
    haze_level = np.convolve(haze_level, np.ones(int(fps)) / int(fps), "same")  # smoke lingers
    occluded = _runs(n, 0.06, 2 * fps, rng)  # lens smeared or camera out of the body

    frames = np.empty((n, size, size, 3), np.uint8)
    t_seconds = np.arange(n) / fps
    for i in range(n):
        side = zoom[i] * height
        cx, cy = walk[i] * height
        scale = size / side
        matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]])
        frame = cv2.warpAffine(tissue, matrix, (size, size), borderMode=cv2.BORDER_REFLECT_101)
        if i >= starts[2]:  # clips placed during clipping stay in view afterwards
            placed = 4 if i >= clipping_end else 1 + 3 * (i - starts[2]) // max(1, lengths[2])
            for px, py in clip_points[:placed]:
                x, y = matrix @ np.array([px * height, py * height, 1.0])
                cv2.rectangle(frame, (int(x) - 2, int(y) - 1), (int(x) + 2, int(y) + 1),
                              (205, 205, 215), -1)  # fmt: skip
        p = phases[i]
        amplitude, period = PHASE_MOTION[p]
        for k, name in enumerate(TOOLS):
            if not tools[i, k]:
                continue
            ox, oy = phase_offset[k]
            w = 2 * np.pi * t_seconds[i] / period
            dx, dy = amplitude * size * np.sin(w + ox), amplitude * size * np.cos(0.7 * w + oy)
            if name == "SpecimenBag" and p == 6:  # pulled out through the port
                dx += size * 0.6 * (i - starts[6]) / max(1, lengths[6])
            moved = _warp(sprites[name], dx, dy, 8 * np.sin(w + oy))
            inside = moved.parts > 0
            frame[inside] = moved.image[inside]
        if haze_level[i] > 0:
            frame = cv2.addWeighted(frame, 1 - haze_level[i], np.full_like(frame, 215),
                                    haze_level[i], 0)  # fmt: skip
        if occluded[i]:
            frame = cv2.GaussianBlur(frame, (0, 0), size / 8) // 2
        frames[i] = frame
    noise = rng.normal(0, 3, frames.shape)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    return SyntheticVideo(frames, phases, tools.astype(np.uint8), fps)


def write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Encode RGB frames (N, H, W, 3) as H.264 in an mp4 container with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_cholec80(
    root: Path,
    video: SyntheticVideo,
    number: int,
    phase_names: tuple[str, ...] = PHASES,
    tool_names: tuple[str, ...] = TOOLS,
) -> None:
    """Write `video` as `videoNN` in the Cholec80 layout under `root`.

    Phase rows: one per frame (`Frame<TAB>Phase`). Tool rows: one per second of video (every
    `fps` frames, as Cholec80 annotates every 25th frame of its 25 fps videos).
    """
    stem = f"video{number:02d}"
    write_mp4(root / "videos" / f"{stem}.mp4", video.frames, video.fps)
    phase_dir, tool_dir = root / "phase_annotations", root / "tool_annotations"
    phase_dir.mkdir(parents=True, exist_ok=True)
    tool_dir.mkdir(parents=True, exist_ok=True)
    rows = [f"{i}\t{phase_names[p]}" for i, p in enumerate(video.phases)]
    (phase_dir / f"{stem}-phase.txt").write_text("Frame\tPhase\n" + "\n".join(rows) + "\n")
    step = int(round(video.fps))
    rows = [
        "\t".join([str(i), *(str(v) for v in video.tools[i])])
        for i in range(0, len(video.tools), step)
    ]
    header = "\t".join(["Frame", *tool_names])
    (tool_dir / f"{stem}-tool.txt").write_text(header + "\n" + "\n".join(rows) + "\n")


def generate_cholec80(
    root: Path,
    counts: dict[str, int],
    seconds: tuple[float, float] = (150.0, 240.0),
    size: int = 64,
    fps: float = 5.0,
    background: Background = "retina",
    seed: int = 0,
) -> dict[str, list[int]]:
    """Render and write `counts[split]` videos per split; returns the video numbers per split.

    Each video has its own seed (the split's seed and its index), so the test videos stay the
    same whatever the number of training videos.
    """
    numbers: dict[str, list[int]] = {}
    first = 1
    for offset, split in enumerate(("train", "val", "test")):
        numbers[split] = list(range(first, first + counts.get(split, 0)))
        for index, number in enumerate(numbers[split]):
            rng = np.random.default_rng([seed, offset, index])
            length = rng.uniform(*seconds)
            write_cholec80(root, render_video(length, rng, size, fps, background), number)
        first += counts.get(split, 0)
    return numbers
