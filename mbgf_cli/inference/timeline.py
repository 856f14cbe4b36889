"""Timelines: class scores (or embeddings) per window of a long video, for ``Predictor.timeline``,
``mbgf predict --timeline`` and ``mbgf embed --timeline``.

    from mbgf_cli.inference import Predictor

    timeline = Predictor.from_checkpoint("runs/x/best").timeline("long.mp4", window=2.0, stride=1.0, top_k=5)
    timeline.to_json()   # {"video": ..., "windows": [{"start", "end", "top": [{"id", "label", "probability"}]}]}

Each window is one clip of the model's frames at the TSN segment centres of the window's frames
(``mbgf_cli.data.windows``), resized, cropped and normalised as the test views of ``VideoFiles`` (1 or 3
crops, averaged as ``score_views`` averages views), so a window's probabilities are what ``mbgf predict``
gives for a file holding only that window's frames. A video is decoded once, front to back, in this
process; windows go through the model (``Predictor.scores`` or ``Predictor.video_vectors``) in batches as
they complete, so memory does not grow with the video's length. This module takes the predictor as an
argument and does not import it (the predictor imports this).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mbgf_cli.console import console, err_console
from mbgf_cli.data.windows import (
    DecodeStats,
    ShortVideo,
    check_window,
    decode_windows,
    plan_windows,
    video_length,
)
from mbgf_cli.errors import UserError
from mbgf_cli.inference.configs import DEFAULT_STRIDE, DEFAULT_WINDOW
from mbgf_cli.inference.results import Ranked, print_skipped, top_classes

# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoTimeline:
    """The class probabilities of every window of one video: ``probs[w]`` for ``spans[w]`` (seconds)."""

    video: str
    class_names: list[str]
    spans: list[tuple[float, float]]
    probs: torch.Tensor  # [W, K] softmax over classes, averaged over crops
    top_k: int = 5

    def top(self, k: int | None = None) -> list[list[Ranked]]:
        return top_classes(self.probs, self.class_names, self.top_k if k is None else k)

    def to_json(self, k: int | None = None) -> dict:
        windows = [{"start": round(start, 6), "end": round(end, 6),
                    "top": [{"id": r.id, "label": r.label, "probability": round(r.probability, 6)} for r in top]}
                   for (start, end), top in zip(self.spans, self.top(k), strict=True)]
        return {"video": self.video, "windows": windows}


@dataclass
class Timelines:
    """What ``mbgf predict --timeline`` gives: a timeline per readable video, the others with the reason."""

    videos: list[VideoTimeline]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self, k: int | None = None) -> dict:
        return {"videos": [timeline.to_json(k) for timeline in self.videos],
                "skipped": [video for video, _ in self.skipped]}

    def csv_text(self, k: int | None = None) -> str:
        """``video,start,end,rank,id,label,probability``: a row per video, window and rank."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["video", "start", "end", "rank", "id", "label", "probability"])
        for timeline in self.videos:
            for (start, end), top in zip(timeline.spans, timeline.top(k), strict=True):
                for rank, r in enumerate(top, start=1):
                    writer.writerow([timeline.video, f"{start:.3f}", f"{end:.3f}", rank, r.id, r.label,
                                     f"{r.probability:.6f}"])
        return buffer.getvalue()


class UnreadableVideo(UserError):
    """A video a timeline cannot be made of; ``reason`` is the decoder's short reason."""

    def __init__(self, video: str, reason: str):
        super().__init__(f"{video}: cannot read video: {reason}")
        self.video, self.reason = video, reason


# --------------------------------------------------------------------------------------------------
# Checks, before any work
# --------------------------------------------------------------------------------------------------


def window_and_stride(cfg) -> tuple[float, float]:
    """A ``TimelineOptions``' window and stride in seconds, the defaults filled in."""
    window = DEFAULT_WINDOW if cfg.window is None else cfg.window
    stride = DEFAULT_STRIDE if cfg.stride is None else cfg.stride
    check_window(window, stride)
    return window, stride


def check_timeline_views(views: tuple[int, int]) -> int:
    """A window is one clip: ``--views 1x1`` or ``1x3`` (crops); returns the crops."""
    clips, crops = views
    if clips != 1:
        raise UserError(f"--views {clips}x{crops}: with --timeline each window is one clip; give 1x1 or 1x3")
    return crops


def check_timeline_decoder(decoder: str) -> None:
    if decoder not in ("auto", "pyav"):
        raise UserError(f"--decoder {decoder}: --timeline decodes each video once, front to back, with PyAV; "
                        "give auto or pyav")


def check_timeline(window: float, stride: float, top_k: int = 1, batch_size: int = 1, crops: int = 1) -> None:
    """The arguments of ``Predictor.timeline`` (the command line's are checked as declared)."""
    check_window(window, stride)
    for option, value in (("--top-k", top_k), ("--batch-size", batch_size)):
        if value < 1:
            raise UserError(f"{option} must be at least 1, not {value}")
    if crops not in (1, 3):
        raise UserError(f"crops must be 1 or 3, not {crops}")


def check_outputs(csv_file, plot) -> None:
    """``--csv`` and ``--plot FILE.png`` can be written, and matplotlib is there to draw (before any work)."""
    from mbgf_cli.outputs import check_output_file

    if csv_file:
        check_output_file(csv_file, "--csv")
    if not plot:
        return
    if Path(plot).suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: give a .png file name")
    check_output_file(plot, "--plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'mbgf[plot]'") from None


# --------------------------------------------------------------------------------------------------
# The engine: windows of one video through the model
# --------------------------------------------------------------------------------------------------


def video_rows(predictor, video, window: float, stride: float, compute, crops: int = 1, batch_size: int = 8,
               stats: DecodeStats | None = None, bar=None) -> tuple[list[tuple[float, float]], torch.Tensor]:
    """``(spans, rows)``: ``compute(views [B, crops, T, 3, S, S] on the device)`` -> ``[B, ...]`` for every
    window of the file ``video``, in order. An unreadable video is an ``UnreadableVideo`` naming it."""
    from mbgf_cli.data.readers import VideoError

    video = str(video)
    if not Path(video).is_file():
        raise UnreadableVideo(video, "missing")
    try:
        num_frames, fps = video_length(video)
        for attempt in range(2):
            windows = plan_windows(num_frames, fps, window, stride, predictor.config.frames)
            try:
                return _run_windows(predictor, video, windows, compute, crops, batch_size, stats, bar)
            except ShortVideo as short:
                # The container's frame count was wrong: plan again with the frames there are.
                if attempt or short.counted < 2:
                    raise VideoError("decode error", str(short)) from None
                num_frames = short.counted
    except VideoError as e:
        raise UnreadableVideo(video, str(e)) from None
    raise AssertionError("unreachable")


def _run_windows(predictor, video, windows, compute, crops, batch_size, stats, bar):
    # The test views' transform and normalisation, as VideoFiles gives them to Predictor.stream.
    files = predictor.files([], (1, crops))
    task = bar.add_task("timeline", total=len(windows), info=Path(video).name) if bar is not None else None
    spans, rows, clips = [], [], []

    def flush():
        views = torch.stack(clips).to(predictor.device, non_blocking=True)  # [B, crops, T, 3, S, S] uint8
        rows.append(compute(files.normalize(views)).cpu())
        if task is not None:
            bar.update(task, advance=len(clips))
        clips.clear()

    try:
        # Each sampled frame is resized and cropped on its own as it is decoded (the same pixels as the
        # whole clip at once): what is held per frame is the model's input, not the decoded picture.
        for found, frames in decode_windows(video, windows, lambda rgb: files.transform(rgb[None]), stats):
            spans.append((found.start, found.end))
            clips.append(torch.cat(frames, dim=1))  # [crops, T, 3, S, S]
            if len(clips) == batch_size:
                flush()
        if clips:
            flush()
    finally:
        if task is not None:
            bar.remove_task(task)
    return spans, torch.cat(rows)


def video_timeline(predictor, video, names: Sequence[str], tokens: torch.Tensor, window: float = DEFAULT_WINDOW,
                   stride: float = DEFAULT_STRIDE, top_k: int = 5, crops: int = 1, batch_size: int = 8,
                   stats: DecodeStats | None = None, bar=None) -> VideoTimeline:
    """The timeline of one video file against ``names`` (``tokens``: their class tokens on the device)."""
    spans, probs = video_rows(predictor, video, window, stride, lambda views: predictor.scores(views, tokens).probs,
                              crops, batch_size, stats, bar)
    return VideoTimeline(str(video), list(names), spans, probs, top_k)


# --------------------------------------------------------------------------------------------------
# Output: `mbgf predict --timeline`'s table, CSV and plot
# --------------------------------------------------------------------------------------------------


def write_outputs(result: Timelines, csv_file, plot, top_k: int) -> None:
    if csv_file:
        from mbgf_cli.fileio import atomic_write_text

        Path(csv_file).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(csv_file, result.csv_text(top_k))
    if plot and result.videos:
        from mbgf_cli.plots import plot_timelines

        plot_timelines(result.videos, plot, top_k)


def print_timelines(result: Timelines, info: dict, cfg) -> None:
    from rich.markup import escape
    from rich.table import Table

    if cfg.as_json:
        console.print_json(json.dumps(result.to_json(cfg.top_k)))
        return
    for timeline in result.videos:
        k = min(cfg.top_k, len(timeline.class_names))
        table = Table(title=f"{escape(timeline.video)}: top-{k} of {len(timeline.class_names)} classes, "
                            f"{info['window']:g} s windows every {info['stride']:g} s",
                      caption=escape(info["model"]), caption_justify="left", title_justify="left", show_lines=k > 1)
        table.add_column("start", justify="right")
        table.add_column("end", justify="right")
        table.add_column("class")
        table.add_column("probability", justify="right")
        for (start, end), top in zip(timeline.spans, timeline.top(k), strict=True):
            table.add_row(f"{start:.2f}", f"{end:.2f}", "\n".join(escape(r.label) for r in top),
                          "\n".join(f"{r.probability:.3f}" for r in top))
        console.print(table)
    print_skipped(result.skipped)
    for option, written in (("csv", cfg.csv), ("plot", cfg.plot if result.videos else None)):
        if written:
            err_console.print(f"timeline {option} written to {written}", highlight=False)
