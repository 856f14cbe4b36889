"""Which frames of a video make a clip.

TSN segments (the default, what ActionCLIP and X-CLIP use): the video is cut into T equal
segments and one frame is taken from each.
  train  a random frame in each segment (one random offset per segment)
  test   the centre of each segment
  views  N clips whose offsets inside the segments are evenly spaced and fixed: clip k takes the
         frame at (k + 0.5) / N of each segment (N = 1 is the centre, i.e. ``test``).

Dense sampling: ``clip_len`` frames, ``frame_interval`` apart, from one window of the video
(train: a random window; test: N windows evenly spaced over the video).

Videos shorter than a clip repeat frames in order (0,0,1,1,2,...), never wrap around, so the clip
is still played forwards, which the direction-sensitive synthetic classes need.
All functions return a list of T ints in [0, num_frames) in non-decreasing order.
"""

from dataclasses import dataclass

import torch


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def spread(num_frames: int, count: int) -> list[int]:
    """``count`` indices covering a video shorter than the clip: each frame repeated, in order."""
    return [min(num_frames - 1, (i * num_frames) // count) for i in range(count)]


def tsn_train(num_frames: int, frames: int, generator: torch.Generator | None = None) -> list[int]:
    """One random frame in each of ``frames`` equal segments."""
    if num_frames < frames:
        return spread(num_frames, frames)
    seg = num_frames / frames
    offsets = torch.rand(frames, generator=generator).tolist()
    return [min(num_frames - 1, int(seg * i + seg * u)) for i, u in enumerate(offsets)]


def tsn_view(num_frames: int, frames: int, clip: int = 0, num_clips: int = 1) -> list[int]:
    """Clip ``clip`` of ``num_clips``: the frame at (clip + 0.5)/num_clips of each segment."""
    if num_frames < frames:
        return spread(num_frames, frames)
    seg = num_frames / frames
    pos = (clip + 0.5) / num_clips
    return [min(num_frames - 1, int(seg * i + seg * pos)) for i in range(frames)]


def dense_train(
    num_frames: int, clip_len: int, frame_interval: int, generator: torch.Generator | None = None
) -> list[int]:
    """``clip_len`` frames ``frame_interval`` apart, from a random window."""
    span = (clip_len - 1) * frame_interval + 1
    if num_frames < span:
        return _squeeze(num_frames, clip_len)
    start = int(_uniform(generator) * (num_frames - span + 1))
    return [start + i * frame_interval for i in range(clip_len)]


def dense_view(num_frames: int, clip_len: int, frame_interval: int, clip: int = 0, num_clips: int = 1) -> list[int]:
    """Window ``clip`` of ``num_clips`` windows spread evenly over the video (1 = the centre window)."""
    span = (clip_len - 1) * frame_interval + 1
    if num_frames < span:
        return _squeeze(num_frames, clip_len)
    start = int((num_frames - span) * (clip + 0.5) / num_clips + 0.5)  # round half up
    return [start + i * frame_interval for i in range(clip_len)]


def _squeeze(num_frames: int, clip_len: int) -> list[int]:
    # The window does not fit: cover the whole video instead, in order (repeating if shorter than the clip).
    if num_frames < clip_len:
        return spread(num_frames, clip_len)
    return tsn_view(num_frames, clip_len)


@dataclass(frozen=True)
class FrameSampler:
    """The sampling rule of a dataset: ``mode`` "tsn" (``frames`` segments) or "dense".

    ``sampler(num_frames, generator)`` gives the training clip; ``sampler.views(num_frames, n)``
    the ``n`` deterministic test clips.
    """

    frames: int = 8
    mode: str = "tsn"
    frame_interval: int = 2  # dense only

    def __post_init__(self):
        if self.mode not in ("tsn", "dense"):
            raise ValueError(f"sampling must be 'tsn' or 'dense', got {self.mode!r}")
        if self.frames < 1 or self.frame_interval < 1:
            raise ValueError("frames and frame_interval must be >= 1")

    def __call__(self, num_frames: int, generator: torch.Generator | None = None) -> list[int]:
        if self.mode == "tsn":
            return tsn_train(num_frames, self.frames, generator)
        return dense_train(num_frames, self.frames, self.frame_interval, generator)

    def view(self, num_frames: int, clip: int = 0, num_clips: int = 1) -> list[int]:
        if self.mode == "tsn":
            return tsn_view(num_frames, self.frames, clip, num_clips)
        return dense_view(num_frames, self.frames, self.frame_interval, clip, num_clips)

    def views(self, num_frames: int, num_clips: int) -> list[list[int]]:
        return [self.view(num_frames, k, num_clips) for k in range(num_clips)]
