"""Windows over a long video, decoded in one forward pass: what ``mbgf predict --timeline`` reads.

    windows = plan_windows(num_frames=240, fps=8.0, window=2.0, stride=1.0, frames=8)
    for window, frames in decode_windows("long.mp4", windows, prepare=transform_one_frame):
        ...  # frames: a list of prepare(frame) in the window's sampling order

A window covers ``[start, end)`` seconds; its clip is the model's ``frames`` frames taken at the TSN
segment centres of the window's frames (``sampling.tsn_view``, the rule eval and predict use for a
whole video), so a window scores as ``mbgf predict`` scores a file holding just that window's frames.
Windows start every ``stride`` seconds; where they do not reach the end of the video, one more ends
exactly there, and a video shorter than one window gives one window over the whole video.

Decoding is sequential (PyAV, forward only) and reads every frame once, however much windows
overlap: a frame is converted to RGB and prepared only when some window samples it, held while a
window that has not been emitted needs it, and dropped after. So memory is bounded by the frames of
the windows open at one time, whatever the video's length. Times are frame index / average frame
rate (variable frame rate videos are placed by frame count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av

from mbgf_cli.data.readers import PyAVVideo, VideoError, decode_frames, error_line
from mbgf_cli.data.sampling import tsn_view

EPSILON = 1e-9  # seconds: a window ending within this of the video's end reaches it


@dataclass(frozen=True)
class Window:
    start: float               # seconds
    end: float                 # seconds
    indices: tuple[int, ...]   # the frames of its clip, in order (repeats where it has fewer frames)


@dataclass
class DecodeStats:
    """What one pass decoded: every frame it read (``decoded``), the ones it converted (``converted``: the
    frames some window samples), and the most frames it held at one time (``peak_held``)."""

    decoded: int = 0
    converted: int = 0
    peak_held: int = 0


class ShortVideo(Exception):
    """The video ended before the frame count its container declares: plan again with ``counted``."""

    def __init__(self, counted: int):
        super().__init__(f"the video has {counted} frames, fewer than its container says")
        self.counted = counted


def check_window(window: float, stride: float) -> None:
    """Window and stride in seconds, both positive (a stride longer than the window leaves gaps)."""
    from mbgf_cli.errors import UserError

    for option, value in (("--window", window), ("--stride", stride)):
        if not value > 0 or value != value or value == float("inf"):
            raise UserError(f"{option} must be a positive number of seconds, not {value}")


def frame_span(start: float, end: float, fps: float, num_frames: int) -> tuple[int, int]:
    """The frames ``[first, stop)`` whose start times lie in ``[start, end)`` (at least one)."""
    first = min(num_frames - 1, max(0, int(round(start * fps))))
    stop = min(num_frames, max(first + 1, int(round(end * fps))))
    return first, stop


def plan_windows(num_frames: int, fps: float, window: float, stride: float, frames: int) -> list[Window]:
    """The windows of a video of ``num_frames`` at ``fps``, each with its clip's ``frames`` indices."""
    duration = num_frames / fps
    if duration <= window + EPSILON:
        spans = [(0.0, duration)]
    else:
        spans, k = [], 0
        while k * stride + window <= duration + EPSILON:
            spans.append((k * stride, k * stride + window))
            k += 1
        if spans[-1][1] < duration - EPSILON:
            spans.append((duration - window, duration))
    planned = []
    for start, end in spans:
        first, stop = frame_span(start, end, fps, num_frames)
        planned.append(Window(start, min(end, duration), tuple(first + i for i in tsn_view(stop - first, frames))))
    return planned


def video_length(path: str) -> tuple[int, float]:
    """``(frames, fps)`` of a video from its container; frames counted by decoding where it has no count."""
    video = PyAVVideo(path)
    if not video.fps:
        raise VideoError("no frame rate", "the container gives none")
    frames = video.num_frames if video.num_frames is not None else video.count()
    if frames == 0:
        raise VideoError("no frames")
    if frames == 1:
        raise VideoError("still image", "1 frame")
    return frames, float(video.fps)


def decode_windows(path: str, windows: list[Window], prepare: Callable, stats: DecodeStats | None = None
                   ) -> Iterator[tuple[Window, list]]:
    """``(window, [prepare(rgb frame) per index])`` for each of ``windows`` (sorted by start), as soon as
    its last frame is decoded. Raises ``VideoError``, or ``ShortVideo`` when the video ends early."""
    stats = stats if stats is not None else DecodeStats()
    needed: dict[int, int] = {}  # frame -> how many pending windows sample it
    for window in windows:
        for index in set(window.indices):
            needed[index] = needed.get(index, 0) + 1
    held: dict[int, object] = {}
    pending = sorted(windows, key=lambda w: max(w.indices))
    next_window = 0
    if not pending:
        return
    last = max(needed)
    try:
        container = av.open(str(path), mode="r")
    except Exception as e:
        raise VideoError("cannot open", error_line(e)) from None
    with container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # one video, decoded in this process: let FFmpeg use its threads
        for index, frame in enumerate(decode_frames(container, stream)):
            stats.decoded += 1
            if index in needed:
                held[index] = prepare(frame.to_ndarray(format="rgb24"))
                stats.converted += 1
                stats.peak_held = max(stats.peak_held, len(held))
            while next_window < len(pending) and max(pending[next_window].indices) <= index:
                window = pending[next_window]
                yield window, [held[i] for i in window.indices]
                for i in set(window.indices):
                    needed[i] -= 1
                    if needed[i] == 0:
                        del needed[i], held[i]
                next_window += 1
            if index >= last:
                return
    raise ShortVideo(stats.decoded)
