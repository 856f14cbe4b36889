"""Which frames of a video make a clip.

TSN segments (the default, what ActionCLIP and X-CLIP use): the video is cut into T equal
segments and one frame is taken from each.
  train  a random frame in each segment (one random offset per segment)
  test   the centre of each segment
  views  N clips whose offsets inside the segments are evenly spaced and fixed: clip k takes the
         frame at (k + 0.5) / N of each segment (N = 1 is the centre, i.e. ``test``).

Videos shorter than a clip repeat frames in order (0,0,1,1,2,...), never wrap around, so the clip
is still played forwards, which the direction-sensitive synthetic classes need.
All functions return a list of T ints in [0, num_frames) in non-decreasing order.
"""

from dataclasses import dataclass

import torch


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


@dataclass(frozen=True)
class FrameSampler:
    """TSN sampling with ``frames`` segments: ``sampler(num_frames, generator)`` gives the training clip;
    ``sampler.views(num_frames, n)`` the ``n`` deterministic test clips."""

    frames: int = 8

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError("frames must be >= 1")

    def __call__(self, num_frames: int, generator: torch.Generator | None = None) -> list[int]:
        return tsn_train(num_frames, self.frames, generator)

    def view(self, num_frames: int, clip: int = 0, num_clips: int = 1) -> list[int]:
        return tsn_view(num_frames, self.frames, clip, num_clips)

    def views(self, num_frames: int, num_clips: int) -> list[list[int]]:
        return [self.view(num_frames, k, num_clips) for k in range(num_clips)]
