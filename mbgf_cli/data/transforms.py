"""Clip transforms in plain torch, on uint8 frames (no torchvision).

Input: decoded frames, uint8 ``[T, H, W, 3]`` (numpy or torch). Output: float ``[T, 3, S, S]``
normalised with CLIP's mean/std (test: ``[crops, T, 3, S, S]``).

Every crop is computed as a box in the decoded frame and resized once to S x S, which gives the
same picture as "resize the short side, then crop" at a fraction of the cost. Resizing runs on
uint8 channels-last tensors (torch's fast path, antialiased); colour jitter, grayscale and
normalisation run in float on the small output. One set of random parameters is drawn per clip
(every frame gets the same crop, flip and colour change), from the caller's ``torch.Generator``,
so a clip is a pure function of its generator's seed.

Train: crop ("multiscale": TSN's crop of side short*s, s in (1, .875, .75, .66), the two sides
chosen at most one scale apart, at a random place; "random_resized": area and aspect drawn as in
Inception; "center"), flip, colour jitter (brightness, contrast, saturation, hue), grayscale.
Test: short side to S (or to S*256/224), then one centre crop or three crops along the long side.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fusion.config import CLIP_MEAN, CLIP_STD

Box = tuple[int, int, int, int]  # top, left, height, width


def to_tchw(frames) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, 3, H, W]`` (a channels-last view, no copy)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2)


def resized_crop(x: torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` out of uint8 ``[T, 3, H, W]`` and resize it to ``size`` (h, w), antialiased bilinear."""
    top, left, h, w = box
    x = x[:, :, top : top + h, left : left + w]
    if (h, w) == tuple(size):
        return x
    x = x.contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 ``[T, 3, H, W]`` so that its shorter side is ``size``."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    return resized_crop(x, (0, 0, h, w), (max(1, round(h * scale)), max(1, round(w * scale))))


def center_box(h: int, w: int, crop_h: int, crop_w: int) -> Box:
    crop_h, crop_w = min(crop_h, h), min(crop_w, w)
    return (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w


def view_boxes(h: int, w: int, size: int, crops: int = 1, resize: str = "input") -> list[Box]:
    """Boxes equivalent to: short side to ``size`` (``resize="input"``) or ``size*256/224``
    (``"256/224"``), then 1 centre crop or 3 crops (start, centre, end of the long side) of ``size``."""
    if crops not in (1, 3):
        raise ValueError(f"test crops must be 1 or 3, got {crops}")
    short = size if resize == "input" else round(size * 256 / 224)
    side = max(1, round(min(h, w) * size / short))  # the crop's side in decoded pixels
    if crops == 1:
        return [center_box(h, w, side, side)]
    if w >= h:
        top = (h - side) // 2
        return [(top, left, side, side) for left in (0, (w - side) // 2, w - side)]
    left = (w - side) // 2
    return [(top, left, side, side) for top in (0, (h - side) // 2, h - side)]


def multiscale_box(h: int, w: int, generator, scales=(1.0, 0.875, 0.75, 0.66), max_distort: int = 1) -> Box:
    """TSN's multi-scale crop: sides short*scales[i] and short*scales[j] with |i-j| <= max_distort."""
    base = min(h, w)
    sides = [max(1, int(base * s)) for s in scales]
    pairs = [(i, j) for i in range(len(sides)) for j in range(len(sides)) if abs(i - j) <= max_distort]
    k = int(torch.randint(len(pairs), (), generator=generator))
    crop_h, crop_w = sides[pairs[k][0]], sides[pairs[k][1]]
    top = int(torch.randint(h - crop_h + 1, (), generator=generator))
    left = int(torch.randint(w - crop_w + 1, (), generator=generator))
    return top, left, crop_h, crop_w


def random_resized_box(h: int, w: int, generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Box:
    """Inception-style crop: area fraction in ``scale``, aspect (log-uniform) in ``ratio``."""
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(4, generator=generator).tolist()
        target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
        crop_w = round(math.sqrt(target * aspect))
        crop_h = round(math.sqrt(target / aspect))
        if 0 < crop_w <= w and 0 < crop_h <= h:
            return int(u[2] * (h - crop_h + 1)), int(u[3] * (w - crop_w + 1)), crop_h, crop_w
    return center_box(h, w, min(h, w), min(h, w))


def normalize(x: torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """uint8 (or float in 0..255) ``[..., 3, H, W]`` -> contiguous float ``(x/255 - mean) / std``."""
    # Made contiguous while still uint8: reordering channels-last floats costs ten times more.
    x = x.contiguous().float()
    scale = torch.tensor([1 / (255 * s) for s in std]).view(3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)]).view(3, 1, 1)
    return x.mul_(scale).sub_(shift)


# The 3x3 colour algebra is done in numpy float64: a dozen tiny torch ops would cost more than the pixels.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_LUMA = np.array([0.299, 0.587, 0.114])
_TO_GRAY = np.outer(np.ones(3), _LUMA)  # each row: the luma weights


def hue_matrix(shift: float) -> np.ndarray:
    """3x3 RGB matrix that rotates hue by ``shift`` turns (a rotation of the YIQ chroma plane)."""
    c, s = math.cos(2 * math.pi * shift), math.sin(2 * math.pi * shift)
    rotate = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return _YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ


def color_matrix(
    brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0, hue: float = 0.0,
    mean_luma: float = 0.5, gray: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour jitter and grayscale as one affine map of RGB in 0..1: ``y = M @ rgb + v``.

    Every step is linear: brightness scales; contrast blends towards the clip's mean grey (after
    brightness: ``brightness * mean_luma``), the same for every frame, so a clip that brightens over
    time still does; saturation blends towards each pixel's grey; hue rotates the chroma plane;
    grayscale keeps the grey. Composed, they cost one pass over the clip instead of one each (the
    result is clamped once at the end rather than after every step).
    """
    m, v = brightness * np.eye(3), np.zeros(3)
    m, v = contrast * m, contrast * v + (1 - contrast) * brightness * mean_luma
    sat = saturation * np.eye(3) + (1 - saturation) * _TO_GRAY
    m, v = sat @ m, sat @ v
    if hue:
        turn = hue_matrix(hue)
        m, v = turn @ m, turn @ v
    if gray:
        m, v = _TO_GRAY @ m, _TO_GRAY @ v
    return m, v


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> torch.Tensor:
    """Float ``[T, 3, H, W]`` in 0..1, one set of factors for the whole clip (1, 1, 1, 0 = unchanged)."""
    mean_luma = float(x.mean(dim=(0, 2, 3)).double().numpy() @ _LUMA)
    m, v = color_matrix(brightness, contrast, saturation, hue, mean_luma)
    return _affine(x, m, v, 1.0, np.zeros(3), np.ones(3))


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Float ``[T, 3, H, W]`` -> the same shape, every channel the luma."""
    m, v = color_matrix(gray=True)
    return _affine(x, m, v, 1.0, np.zeros(3), np.ones(3))


def _affine(x: torch.Tensor, m: np.ndarray, v: np.ndarray, scale: float, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """``clamp(m @ (x / scale) + v, 0, 1)`` per pixel, then ``(y - mean) / std``: contiguous float [T, 3, H, W].

    Written out per output channel (three multiply-adds on whole planes), which is several times
    faster on a CPU than an einsum or matmul over a channel dimension of 3.
    """
    x = x.contiguous().float()
    a = (m / scale) / std[:, None]  # normalisation folded in
    b = (v - mean) / std
    lo, hi = (0 - mean) / std, (1 - mean) / std  # the clamp to 0..1, in normalised units
    out = torch.empty_like(x)
    for c in range(3):
        plane = out[:, c]
        torch.mul(x[:, 0], float(a[c, 0]), out=plane)
        plane.add_(x[:, 1], alpha=float(a[c, 1])).add_(x[:, 2], alpha=float(a[c, 2])).add_(float(b[c]))
        plane.clamp_(float(lo[c]), float(hi[c]))
    return out


@dataclass
class TrainTransform:
    """Training augmentation of one clip: crop, flip, colour jitter, grayscale, CLIP normalisation.

    ``jitter`` is the probability of colour jitter (0 disables) with strengths ``jitter_strength``
    (brightness, contrast, saturation, hue); ``gray`` the probability of grayscale.
    ``flip=False`` for direction-sensitive datasets (left-to-right vs right-to-left).
    """

    size: int = 224
    crop: str = "multiscale"  # multiscale | random_resized | center
    scales: tuple = (1.0, 0.875, 0.75, 0.66)
    area: tuple = (0.08, 1.0)  # random_resized: area fraction range
    flip: bool = True
    jitter: float = 0.8
    jitter_strength: tuple = (0.4, 0.4, 0.2, 0.1)
    gray: float = 0.2
    mean: tuple = CLIP_MEAN
    std: tuple = CLIP_STD

    def __post_init__(self):
        if self.crop not in ("multiscale", "random_resized", "center"):
            raise ValueError(f"train crop must be multiscale, random_resized or center, got {self.crop!r}")

    def __call__(self, frames, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_tchw(frames)
        h, w = x.shape[-2:]
        if self.crop == "multiscale":
            box = multiscale_box(h, w, generator, self.scales)
        elif self.crop == "random_resized":
            box = random_resized_box(h, w, generator, self.area)
        else:
            box = center_box(h, w, min(h, w), min(h, w))
        # All draws happen up front, in a fixed order, whatever is enabled: the same seed gives the
        # same crop whether or not jitter is on.
        u = torch.rand(7, generator=generator).tolist()
        x = resized_crop(x, box, (self.size, self.size))
        if self.flip and u[0] < 0.5:
            x = x.flip(-1)
        jitter, gray = u[1] < self.jitter, u[6] < self.gray
        if not (jitter or gray):
            return normalize(x, self.mean, self.std)
        x = x.contiguous()
        b, c, s, hue = self.jitter_strength if jitter else (0.0, 0.0, 0.0, 0.0)
        # The clip's mean grey, from every 4th pixel of every 4th row: plenty for a contrast anchor.
        mean_luma = float(x[:, :, ::4, ::4].float().mean(dim=(0, 2, 3)).double().numpy() @ _LUMA) / 255
        m, v = color_matrix(
            brightness=1 + b * (2 * u[2] - 1),
            contrast=1 + c * (2 * u[3] - 1),
            saturation=1 + s * (2 * u[4] - 1),
            hue=hue * (2 * u[5] - 1),
            mean_luma=mean_luma,
            gray=gray,
        )
        return _affine(x, m, v, 255.0, np.asarray(self.mean), np.asarray(self.std))


@dataclass
class TestTransform:
    """Deterministic test views of one clip: ``[crops, T, 3, S, S]`` (crops = 1 or 3), normalised float,
    or uint8 with ``normalized=False`` (for a loader that normalises whole batches where the model runs:
    a quarter of the bytes between processes, and the work off the decoding processes)."""

    __test__ = False  # not a pytest test class, whatever its name

    size: int = 224
    crops: int = 1
    resize: str = "input"  # "input": short side to size; "256/224": short side to size*256/224
    mean: tuple = CLIP_MEAN
    std: tuple = CLIP_STD
    normalized: bool = True

    def __post_init__(self):
        if self.resize not in ("input", "256/224"):
            raise ValueError(f"test resize must be 'input' or '256/224', got {self.resize!r}")
        if self.crops not in (1, 3):
            raise ValueError(f"test crops must be 1 or 3, got {self.crops}")

    def __call__(self, frames) -> torch.Tensor:
        x = to_tchw(frames)
        h, w = x.shape[-2:]
        views = [resized_crop(x, box, (self.size, self.size)) for box in view_boxes(h, w, self.size, self.crops, self.resize)]
        views = torch.stack(views)
        return normalize(views, self.mean, self.std) if self.normalized else views.contiguous()
