"""The synthetic motion dataset: the embedded default, generated with numpy and PyAV, no download.

Classes come in temporal pairs: a video of the second class of a pair is a video of the first
class played backwards, so no single frame (nor the set of frames) tells the two apart; only their
order does. Everything else is drawn at random, the same way for every class: the shape (one of
seven, with a darker band on one side so that turning is visible), colour, size, start position,
path length and speed (the motion fills a random part of the clip), a small drift where the class
has no motion of its own, and a textured background with per-frame noise.

Two disjoint class sets, 12 classes each, for pre-training on one and few-shot transfer to the other:
  a: left/right, up/down, growing/shrinking, appearing/disappearing, approaching/moving apart,
     brighter/darker
  b: the two diagonals both ways, rotating clockwise/counterclockwise, circling clockwise/
     counterclockwise, splitting/merging, red to blue/blue to red

``generate(out_dir, ...)`` writes the seed layout (``videos/<class>/<nnnn>.mp4``, ``train.txt``,
``val.txt``, ``labels.csv``) plus ``synthetic.json`` (the options). It is deterministic (the same
seed gives the same lists and the same decoded frames: every video has its own random stream and
x264 runs single-threaded) and idempotent: a re-run skips the videos already written (each is
written under a temporary name and renamed), so an interrupted run resumes.

Sized for a 2-core CPU: 112 px, 32 frames at 16 fps, 125 videos per class (100 train + 25 val),
H.264 without B-frames, CAVLC and no deblocking (``tune=fastdecode``), a keyframe every 16 frames.
"""

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from mbgf_cli.console import progress
from mbgf_cli.data.annotations import write_labels, write_video_list
from mbgf_cli.data.sources import open_source
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_write_json
from mbgf_cli.processes import process_pool
from mbgf_cli.resources import available_cpus, check_workers

# (class of the forward motion, class of the same video played backwards, motion kind)
CLASS_SETS: dict[str, list[tuple[str, str, str]]] = {
    "a": [
        ("moving something from left to right", "moving something from right to left", "horizontal"),
        ("moving something up", "moving something down", "vertical"),
        ("something growing", "something shrinking", "grow"),
        ("something appearing", "something disappearing", "appear"),
        ("two things approaching each other", "two things moving apart", "approach"),
        ("something getting brighter", "something getting darker", "brighten"),
    ],
    "b": [
        ("moving something from top left to bottom right", "moving something from bottom right to top left", "diagonal"),
        ("moving something from top right to bottom left", "moving something from bottom left to top right", "antidiagonal"),
        ("something rotating clockwise", "something rotating counterclockwise", "rotate"),
        ("something circling clockwise", "something circling counterclockwise", "circle"),
        ("one thing splitting in two", "two things merging", "split"),
        ("something turning from red to blue", "something turning from blue to red", "recolour"),
    ],
}

SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "cross", "bar")
EXTENT = 1.2  # the farthest point of any shape from its centre, in radii (a square's corner)


def class_names(class_set: str = "a") -> list[str]:
    """The class names of a set, in id order (pairs adjacent: 0/1, 2/3, ...)."""
    if class_set not in CLASS_SETS:
        raise UserError(f"--class-set must be one of {', '.join(CLASS_SETS)}, got {class_set!r}")
    return [name for forward, backward, _ in CLASS_SETS[class_set] for name in (forward, backward)]


def slug(name: str) -> str:
    return name.replace(" ", "_")


@dataclass(frozen=True)
class SyntheticOptions:
    class_set: str = "a"
    videos_per_class: int = 125
    frames: int = 32
    size: int = 112
    fps: int = 16
    seed: int = 0
    val_fraction: float = 0.2


# ---------------------------------------------------------------------------------------------
# Drawing: every video is a few objects with per-frame centre, radius, angle, opacity and colour,
# composited over a background. All arrays are [T, H, W] or [T, H, W, 3] floats in 0..1.


def _background(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A textured background: a random colour, low-frequency blotches, fine static grain, and noise
    that changes every frame (so "something changes" is never a cue by itself)."""
    base = rng.uniform(0.2, 0.8, size=3)
    grid = rng.uniform(-1, 1, size=(7, 7, 3))
    # Smooth upsampling of the 7x7 grid with one interpolation matrix per axis (separable, vectorised).
    src = np.linspace(0, 6, size)
    lo = np.minimum(np.floor(src).astype(int), 5)
    frac = src - lo
    interp = np.zeros((size, 7))
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] = frac
    blotches = np.stack([interp @ grid[:, :, c] @ interp.T for c in range(3)], axis=-1)
    grain = 0.035 * rng.standard_normal(size=(size, size, 1), dtype=np.float32)
    image = np.clip(base + 0.14 * blotches + grain, 0, 1).astype(np.float32)
    # Per-frame noise: windows at random places of one larger noise field (a quarter of the draws of
    # fresh noise for every frame, and as good at hiding "some pixels changed").
    field = 0.02 * rng.standard_normal(size=(2 * size, 2 * size, 1), dtype=np.float32)
    offsets = rng.integers(0, size, size=(frames, 2))
    return np.stack([image + field[y : y + size, x : x + size] for y, x in offsets])


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the shape's edge, in units of the object's radius (inside < 0)."""
    au, av_ = np.abs(u), np.abs(v)
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "square":
        return np.maximum(au, av_) - 0.85
    if shape == "diamond":
        return (au + av_ - 1.15) / math.sqrt(2)
    if shape == "cross":
        return np.minimum(np.maximum(au - 1.0, av_ - 0.38), np.maximum(au - 0.38, av_ - 1.0))
    if shape == "bar":
        return np.maximum(au - 1.05, av_ - 0.5)
    sides = 3 if shape == "triangle" else 6
    apothem = 0.6 if shape == "triangle" else 0.9
    angles = 2 * math.pi * np.arange(sides) / sides
    return np.max([u * math.cos(a) + v * math.sin(a) for a in angles], axis=0) - apothem


def _draw(canvas: np.ndarray, shape: str, cx, cy, radius, angle, alpha, colour) -> None:
    """Composite one object over ``canvas`` [T, H, W, 3] in place. cx, cy, radius, angle, alpha: [T];
    colour: [T, 3]. The object has a darker band on its +u side, so that rotation shows.

    Each frame touches only the box around the object (every shape fits in 1.3 radii), a tenth of
    the frame, which makes drawing several times faster than whole-frame arrays.
    """
    t, h, w, _ = canvas.shape
    for k in range(t):
        if alpha[k] <= 0:
            continue
        r = float(radius[k])
        reach = 1.3 * r + 2
        x0, x1 = max(0, int(cx[k] - reach)), min(w, int(cx[k] + reach) + 2)
        y0, y1 = max(0, int(cy[k] - reach)), min(h, int(cy[k] + reach) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx[k]  # pixel centres at integer coordinates
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy[k]
        cos, sin = math.cos(angle[k]), math.sin(angle[k])
        u = (dx * cos + dy * sin) / r
        v = (-dx * sin + dy * cos) / r
        coverage = np.clip(0.5 - _signed_distance(shape, u, v) * r, 0.0, 1.0)  # ~1 px antialiased edge
        band = np.clip((u - 0.3) * r + 0.5, 0.0, 1.0)[..., None]
        paint = colour[k] * (1 - 0.45 * band)
        a = (coverage * alpha[k])[..., None]
        region = canvas[k, y0:y1, x0:x1]
        region *= 1 - a
        region += a * paint


def _random_colour(rng: np.random.Generator, background_mean: float) -> np.ndarray:
    """A saturated colour whose brightness differs clearly from the background's."""
    for _ in range(50):
        hue = rng.uniform(0, 1)
        rgb = np.clip(np.abs((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6 - 3) - 1, 0, 1)  # HSV hue wheel
        rgb = rgb * rng.uniform(0.55, 1.0) + rng.uniform(0.0, 0.35)
        rgb = np.clip(rgb, 0, 1)
        if abs(rgb.mean() - background_mean) > 0.22:
            return rgb
    return np.clip(np.full(3, 1.0 - background_mean), 0, 1)


def _timeline(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Progress 0..1 per frame: the motion takes a random 55-100% of the clip (the speed) and starts
    at a random time; before it the object waits, after it the object rests."""
    duration = rng.uniform(0.55, 1.0)
    start = rng.uniform(0, 1 - duration)
    t = np.linspace(0, 1, frames)
    return np.clip((t - start) / duration, 0, 1).astype(np.float32)


@dataclass
class Scene:
    """What every motion kind starts from, drawn in this order from the video's stream: the background,
    the timeline ``p``, the shape, its colour, angle and radius. A kind's function draws the rest from
    ``rng`` and returns its objects ``(cx, cy, radius, angle, alpha, colours)``."""

    rng: np.random.Generator
    frames: int
    s: float  # the frame's side in pixels
    bg_mean: float
    p: np.ndarray
    colour: np.ndarray
    ones: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    colours: np.ndarray
    radius: np.ndarray

    def drift_path(self, r):
        """A slow drift in a random direction, for the kinds without a translation of their own."""
        rng, s = self.rng, self.s
        margin = EXTENT * r + 0.05 * s
        cx0, cy0 = rng.uniform(margin, s - margin, size=2)
        heading = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0, 0.08) * s
        t = np.linspace(-0.5, 0.5, self.frames)
        return cx0 + t * length * math.cos(heading), cy0 + t * length * math.sin(heading)

    def line_path(self, direction, radius_px, reach=1.0):
        """From a random start along ``direction`` (unit vector): 45-75% of the frame (x ``reach``), at
        most what keeps the object inside the frame."""
        rng, s = self.rng, self.s
        r = EXTENT * radius_px + 1
        travel = rng.uniform(0.45, 0.75) * s * reach
        travel = min(travel, (s - 2 * r) / max(abs(direction[0]), abs(direction[1])))
        dx, dy = direction[0] * travel, direction[1] * travel
        lo_x, hi_x = r + max(0, -dx), s - r - max(0, dx)
        lo_y, hi_y = r + max(0, -dy), s - r - max(0, dy)
        x0 = rng.uniform(lo_x, max(lo_x, hi_x))
        y0 = rng.uniform(lo_y, max(lo_y, hi_y))
        return x0 + self.p * dx, y0 + self.p * dy


def _translate(kind: str):
    """horizontal, vertical and the two diagonals: a straight path, not exactly axis-aligned."""
    def objects(sc: Scene) -> list:
        slant = sc.rng.uniform(-0.12, 0.12)
        dx, dy = {
            "horizontal": (1.0, slant),
            "vertical": (slant, -1.0),  # up: y decreases (image rows grow downwards)
            "diagonal": (1.0, 1.0 + slant),
            "antidiagonal": (-1.0, 1.0 + slant),
        }[kind]
        norm = math.hypot(dx, dy)
        cx, cy = sc.line_path((dx / norm, dy / norm), sc.radius[0], reach=1.3 if "diagonal" in kind else 1.0)
        return [(cx, cy, sc.radius, sc.angle, sc.alpha, sc.colours)]
    return objects


def _grow(sc: Scene) -> list:
    small, big = sc.rng.uniform(0.07, 0.1) * sc.s, sc.rng.uniform(0.22, 0.3) * sc.s
    radius = small + sc.p * (big - small)
    cx, cy = sc.drift_path(big)
    return [(cx, cy, radius, sc.angle, sc.alpha, sc.colours)]


def _appear(sc: Scene) -> list:
    cx, cy = sc.drift_path(sc.radius[0])
    return [(cx, cy, sc.radius, sc.angle, sc.p.copy(), sc.colours)]


def _brighten(sc: Scene) -> list:
    cx, cy = sc.drift_path(sc.radius[0])
    dark = sc.rng.uniform(0.15, 0.3)
    light = np.clip(sc.colour * 0.5 + 0.5, 0, 1)  # towards white
    lo = sc.colour * dark
    colours = lo[None] + sc.p[:, None] * (light - lo)[None]
    return [(cx, cy, sc.radius, sc.angle, sc.alpha, colours)]


def _pair(kind: str):
    """approach and split: two objects on a line through a random middle point."""
    def objects(sc: Scene) -> list:
        rng, s, p = sc.rng, sc.s, sc.p
        r = sc.ones * rng.uniform(0.1, 0.14) * s
        heading = rng.uniform(0, math.pi)
        ux, uy = math.cos(heading), math.sin(heading)
        far = rng.uniform(0.5, 0.7) * s
        near = rng.uniform(0.18, 0.24) * s if kind == "approach" else 0.0
        if kind == "split":
            half = (near + (far - near) * p) / 2  # one thing (two on top of each other) -> two
        else:
            half = (far + (near - far) * p) / 2  # approach: far -> near
        reach_x, reach_y = abs(ux) * far / 2 + EXTENT * r[0], abs(uy) * far / 2 + EXTENT * r[0]
        mx = rng.uniform(reach_x, max(reach_x, s - reach_x))
        my = rng.uniform(reach_y, max(reach_y, s - reach_y))
        same = kind == "split" or rng.uniform() < 0.5
        other = sc.colours if same else np.tile(_random_colour(rng, sc.bg_mean), (sc.frames, 1))
        return [(mx - half * ux, my - half * uy, r, sc.angle, sc.alpha, sc.colours),
                (mx + half * ux, my + half * uy, r, sc.angle + math.pi, sc.alpha, other)]
    return objects


def _rotate(sc: Scene) -> list:
    cx, cy = sc.drift_path(sc.radius[0])
    turn = sc.rng.uniform(0.7, 1.2) * math.pi  # clockwise on screen: the angle grows (y points down)
    return [(cx, cy, sc.radius, sc.angle + sc.p * turn, sc.alpha, sc.colours)]


def _circle(sc: Scene) -> list:
    rng, s = sc.rng, sc.s
    r = sc.ones * rng.uniform(0.11, 0.15) * s
    orbit = rng.uniform(0.2, 0.27) * s
    ox, oy = rng.uniform(orbit + EXTENT * r[0], s - orbit - EXTENT * r[0], size=2)
    start = rng.uniform(0, 2 * math.pi)
    theta = start + sc.p * rng.uniform(1.0, 1.5) * math.pi  # clockwise on screen
    return [(ox + orbit * np.cos(theta), oy + orbit * np.sin(theta), r, sc.angle, sc.alpha, sc.colours)]


def _recolour(sc: Scene) -> list:
    cx, cy = sc.drift_path(sc.radius[0])
    red = np.array([0.9, 0.12, 0.1]) + sc.rng.uniform(-0.08, 0.08, size=3)
    blue = np.array([0.1, 0.22, 0.92]) + sc.rng.uniform(-0.08, 0.08, size=3)
    colours = red[None] + sc.p[:, None] * (blue - red)[None]
    return [(cx, cy, sc.radius, sc.angle, sc.alpha, np.clip(colours, 0, 1))]


# Motion kind -> its objects. Every kind of CLASS_SETS has one entry.
MOTIONS = {
    **{kind: _translate(kind) for kind in ("horizontal", "vertical", "diagonal", "antidiagonal")},
    "grow": _grow,
    "appear": _appear,
    "brighten": _brighten,
    "approach": _pair("approach"),
    "split": _pair("split"),
    "rotate": _rotate,
    "circle": _circle,
    "recolour": _recolour,
}


def render(kind: str, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """The forward video of a motion kind: uint8 [frames, size, size, 3]."""
    if kind not in MOTIONS:
        raise ValueError(f"unknown motion kind {kind!r}")
    s = float(size)
    canvas = _background(rng, frames, size)
    bg_mean = float(canvas[0].mean())
    p = _timeline(rng, frames)
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = _random_colour(rng, bg_mean)
    ones = np.ones(frames, dtype=np.float32)
    angle = ones * rng.uniform(0, 2 * math.pi)
    radius = ones * rng.uniform(0.14, 0.21) * s  # 28-42% of the frame across: 2-3 ViT patches
    scene = Scene(rng, frames, s, bg_mean, p, colour, ones, angle, ones.copy(), np.tile(colour, (frames, 1)), radius)
    for cx, cy, r, ang, a, col in MOTIONS[kind](scene):
        _draw(canvas, shape, np.asarray(cx, np.float32), np.asarray(cy, np.float32), np.asarray(r, np.float32),
              np.asarray(ang, np.float32), np.asarray(a, np.float32), np.asarray(col, np.float32))
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> the planar yuv420p layout PyAV takes ([H * 3 / 2, W]): BT.601, limited
    range, chroma averaged over 2x2 blocks, what decoders assume for an untagged H.264 stream.

    Done here in numpy rather than by swscale, whose SIMD code paths depend on buffer alignment and
    can round differently from one call to the next: the same seed must give the same bytes.
    """
    rgb = frame.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def half(c):
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y.ravel(), half(u).ravel(), half(v).ravel()]
    return np.clip(np.round(np.concatenate(planes)), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def encode(path, frames: np.ndarray, fps: int = 16) -> None:
    """Write uint8 [T, H, W, 3] as an H.264 mp4 that is small and cheap to decode and to seek in."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"preset": "veryfast", "tune": "fastdecode", "crf": "23", "g": "16", "bf": "0", "threads": "1"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def video_rng(options: SyntheticOptions, class_index: int, number: int) -> np.random.Generator:
    set_index = sorted(CLASS_SETS).index(options.class_set)
    return np.random.default_rng([options.seed & 0xFFFFFFFF, set_index, class_index, number])


def make_video(job) -> int:
    """Render and encode one video (a process-pool task). Returns its size in bytes."""
    path, options, class_index, number = job
    forward, backward, kind = CLASS_SETS[options.class_set][class_index // 2]
    # Both classes of a pair draw from the same stream: the backward class gets, video for video,
    # different nuisances but the same distribution of them.
    frames = render(kind, video_rng(options, class_index, number), options.frames, options.size)
    if class_index % 2 == 1:
        frames = frames[::-1]
    encode(path, np.ascontiguousarray(frames), options.fps)
    return Path(path).stat().st_size


def plan(options: SyntheticOptions) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The train and val lists ``[(relative path, label)]``: per class, the first
    ``round(videos_per_class * val_fraction)`` videos go to val."""
    names = class_names(options.class_set)
    n_val = int(round(options.videos_per_class * options.val_fraction))
    train, val = [], []
    for label, name in enumerate(names):
        for number in range(options.videos_per_class):
            entry = (f"{slug(name)}/{number:04d}.mp4", label)
            (val if number < n_val else train).append(entry)
    return train, val


def _refuse_foreign(out: Path, planned: set[str]) -> None:
    """A folder without ``synthetic.json`` may hold an interrupted generation (only files it plans, and
    their temporaries); anything else there is someone else's and is not written over."""
    videos = out / "videos"
    if videos.is_symlink():
        raise UserError(f"{videos}: a link to {videos.resolve()}; the synthetic videos are not written into "
                        f"another folder, choose another --output")
    if videos.is_dir():
        for path in videos.rglob("*"):
            rel = path.relative_to(videos).as_posix()
            if path.is_file() and rel not in planned and rel.removesuffix(".part") not in planned:
                raise UserError(f"{videos}: holds {rel}, which is no video of this synthetic dataset; "
                                f"choose another --output")
    if not (out / ".prepare.json").is_file():
        for name in ("train.txt", "val.txt", "labels.csv"):
            if (out / name).exists():
                raise UserError(f"{out / name}: already there and not written by mbgf; choose another --output")


def generate(
    out_dir,
    class_set: str = "a",
    videos_per_class: int = 125,
    frames: int = 32,
    size: int = 112,
    seed: int = 0,
    val_fraction: float = 0.2,
    fps: int = 16,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict:
    """Write the synthetic dataset in the seed layout into ``out_dir``; returns a summary dict.

    Re-running with the same options writes nothing new; different options in a folder that
    already holds a synthetic dataset are an error unless ``overwrite`` (then every video is redone).
    """
    options = SyntheticOptions(class_set, videos_per_class, frames, size, fps, seed, val_fraction)
    class_names(class_set)  # validates the set name
    # x264 reads uninitialised memory on frames of 32 px and less (2x2 macroblocks): the bytes would
    # change from run to run, so 40 px is the smallest size that keeps "same seed, same videos".
    if videos_per_class < 1 or frames < 2 or size < 40 or size % 2 or not 0 <= val_fraction < 1 or fps < 1:
        raise UserError(
            "synthetic: need videos-per-class >= 1, frames >= 2, an even size >= 40, 0 <= val-fraction < 1, fps >= 1"
        )
    workers = check_workers(workers) or available_cpus()  # before any work, as on every command
    out = Path(out_dir)
    manifest = out / "synthetic.json"
    wanted = asdict(options)
    ours = manifest.is_file()  # a synthetic dataset was made here: its files may be replaced
    videos = out / "videos"
    train, val = plan(options)
    names = class_names(class_set)
    if ours:
        try:
            existing = json.loads(manifest.read_text())
        except (json.JSONDecodeError, OSError):
            existing = None
        if existing != wanted and not overwrite:
            raise UserError(
                f"{manifest}: this folder holds a synthetic dataset made with other options ({existing}); "
                f"use another --output or --overwrite"
            )
        if existing != wanted:
            # The old videos go before the record of their options, so that a run killed part-way
            # leaves only videos of the new options (which a re-run keeps).
            stale = {rel for rel, _ in train + val}
            try:
                stale |= {rel for part in plan(SyntheticOptions(**existing)) for rel, _ in part}
            except (TypeError, ValueError, UserError):
                pass  # an unreadable record: its files have other names, or the ones above
            for rel in stale:
                (videos / rel).unlink(missing_ok=True)
            manifest.unlink()
    else:
        _refuse_foreign(out, {rel for rel, _ in train + val})
    # A complete videos.tar from an earlier `prepare-data synthetic --pack tar` counts as done.
    packed = set()
    if manifest.is_file() and not videos.exists() and (out / "videos.tar").is_file():
        packed = set(open_source(out / "videos.tar").names())
        if not {rel for rel, _ in train + val} <= packed:
            packed = set()
    jobs = []
    for rel, label in sorted(train + val):
        path = videos / rel
        if rel in packed or path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(path), options, label, int(Path(rel).stem)))
    if jobs:
        with progress() as bar:
            task = bar.add_task("synthetic videos", total=len(jobs), info="", visible=show_progress)
            if workers == 1:
                for job in jobs:
                    make_video(job)
                    bar.advance(task)
            else:
                with process_pool(min(workers, len(jobs))) as pool:
                    for _ in pool.map(make_video, jobs, chunksize=8):
                        bar.advance(task)
    write_video_list(out / "train.txt", train)
    write_video_list(out / "val.txt", val)
    write_labels(out / "labels.csv", names)
    if not manifest.is_file():
        atomic_write_json(manifest, wanted)
    total = sum((videos / rel).stat().st_size for rel, _ in train + val if rel not in packed)
    return {
        "out": str(out),
        "class_set": class_set,
        "classes": len(names),
        "train": len(train),
        "val": len(val),
        "generated": len(jobs),
        "bytes": total,
    }
