"""Where and how the model runs over videos: the test views of video files as a dataset, batches
decoded by loader processes in order, the model's CPU threads shared with them
(:mod:`mbgf_cli.heuristics`), the default number of decoding processes, and the memory bound of
``--views``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mbgf_cli import heuristics
from mbgf_cli.errors import UserError


def sharing_cores(batches: Iterable, workers: int, device: torch.device) -> Iterator:
    """``batches`` (from a loader with ``workers`` processes) one by one, the model's CPU threads set
    between them by a ``ThreadShare`` from how long each batch was waited for and worked on (nothing to
    share on a GPU or without worker processes)."""
    if torch.device(device).type != "cpu" or workers == 0:
        yield from batches
        return
    share = heuristics.ThreadShare(workers)
    try:
        asked = time.perf_counter()
        for batch in batches:
            ready = time.perf_counter()
            yield batch
            share.update(waited=ready - asked, worked=time.perf_counter() - ready)
            asked = time.perf_counter()
    finally:
        share.restore()


def default_workers(device: str | torch.device = "cpu") -> int:
    """Loader processes when ``--workers`` is not given (eval, predict, embed): up to 4; where the model
    runs on the CPU too, half the cores (at least one), so that the model keeps cores of its own
    (benchmarks/predict.py: on 2 cores one decoder gives more videos/s than two)."""
    cores = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        return min(4, max(1, cores // 2))
    return min(4, cores)


# --------------------------------------------------------------------------------------------------
# Video files as a dataset of test views
# --------------------------------------------------------------------------------------------------


class FileSource:
    """The readers' source protocol over plain paths: a video's name is its path."""

    kind = "files"
    where = "."

    def __contains__(self, name: str) -> bool:
        return os.path.isfile(name)

    def size(self, name: str) -> int:
        return os.path.getsize(name)

    def local_path(self, name: str) -> str:
        return name

    def read(self, name: str) -> bytes:
        return Path(name).read_bytes()


class VideoFiles(Dataset):
    """The test views of video files, exactly as eval's ``VideoDataset`` reads a listed video (decoder,
    TSN segment centres, resize to the input size, 1 or 3 crops, the model's normalisation).

    Item ``i``: ``(views [V, T, 3, S, S] or None, reason, i)``: the views as uint8, or None and why the
    video could not be read (``strict``: a UserError naming it instead). ``normalize(batch)`` turns a
    batch of them into the model's input where the model runs (``Predictor.stream`` does): the same
    float arithmetic as eval's in-loader normalisation, so the same numbers.
    """

    def __init__(self, videos: Sequence[str], frames: int, input_size: int, views: tuple[int, int] = (1, 1),
                 decoder: str = "auto", mean=None, std=None, strict: bool = False):
        from mbgf_cli.data import DECODERS, FrameSampler, TestTransform
        from mbgf_cli.data.transforms import CLIP_MEAN, CLIP_STD

        if decoder not in DECODERS:
            raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        clips, crops = views
        self.videos = list(videos)
        self.clips = clips
        self.decoder = decoder
        self.strict = strict
        self.source = FileSource()
        self.sampler = FrameSampler(frames)
        self.transform = TestTransform(input_size, crops=crops, mean=tuple(mean or CLIP_MEAN),
                                       std=tuple(std or CLIP_STD), normalized=False)

    def normalize(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 views (a batch or one item) -> the model's normalised float input."""
        from mbgf_cli.data.transforms import normalize

        return normalize(views, self.transform.mean, self.transform.std)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        from mbgf_cli.data import VideoError
        from mbgf_cli.data.dataset import load_test_views

        path = self.videos[index]
        try:
            return load_test_views(self.source, path, self.sampler, self.transform, self.clips, self.decoder), "", index
        except VideoError as e:
            if self.strict:
                raise UserError(f"{path}: cannot read video: {e} (without --strict it is skipped)") from None
            return None, str(e), index


def collate_views(items):
    """A batch of ``VideoFiles`` items: ``(views [B', V, T, 3, S, S] or None, indices of those B' videos,
    [(index, reason), ...] of the videos that could not be read)``."""
    read = [(views, index) for views, _, index in items if views is not None]
    failed = [(index, reason) for views, reason, index in items if views is None]
    stacked = torch.stack([views for views, _ in read]) if read else None
    return stacked, [index for _, index in read], failed


def _one_thread(_worker_id: int):
    # Each worker decodes one video at a time; more threads per worker only fight over the cores.
    torch.set_num_threads(1)


def iterate_batches(dataset: VideoFiles, batches: list[list[int]], workers: int) -> Iterator:
    """``collate_views`` batches of ``dataset`` in the order of ``batches`` (lists of item indices),
    decoded by ``workers`` processes (0: this one)."""
    from mbgf_cli.data import VideoLoader

    if not batches:
        return iter(())
    loader = VideoLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_views,
                         pin_memory=torch.cuda.is_available(), worker_init_fn=_one_thread if workers > 0 else None,
                         prefetch_factor=2 if workers > 0 else None)
    return iter(loader)


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


