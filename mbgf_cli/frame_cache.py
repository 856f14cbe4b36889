"""Decoded frames held in memory, for datasets small enough that decoding each video every epoch
would cost more than the model (the synthetic demo: 3,000 short 64 px videos, ~1.2 GB decoded as uint8).

``CachedVideoDataset`` is a :class:`~mbgf_cli.data.VideoDataset` that decodes every listed video
once, whole, before training (in parallel processes), then cuts clips from memory with the very
same sampling and transforms, so an item is identical to the uncached dataset's. A video that fails
to decode is remembered as failed and goes through the dataset's usual skip-and-replace path.
DataLoader workers started after :meth:`CachedVideoDataset.fill` share the frames (fork).
"""

from __future__ import annotations

import os
import signal

import numpy as np
import torch

from mbgf_cli.data import VideoDataset, VideoError, read_frames
from mbgf_cli.processes import process_pool


def _decode_all(job):
    source, name, decoder = job
    try:
        frames, _ = read_frames(source, name, lambda n: list(range(n)), decoder)
        return np.ascontiguousarray(frames)
    except VideoError as e:
        return e


def _ignore_sigint():
    # Ctrl-C in a terminal reaches every process of the group: the training loop handles it, not the decoders.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CachedVideoDataset(VideoDataset):
    """A VideoDataset whose videos are decoded once and kept in memory (call :meth:`fill` first)."""

    _frames: list | None = None

    def fill(self, workers: int = 0, bar=None, description: str = "decoding") -> None:
        """Decode every video of the list (``workers`` processes; 0: in this process)."""
        if self._frames is not None:
            return
        jobs = [(self.source, name, self.decoder) for name, _ in self.samples]
        task = bar.add_task(description, total=len(jobs), info="") if bar is not None else None
        results = []
        if workers > 1 and len(jobs) > 1:
            with process_pool(min(workers, os.cpu_count() or 1), initializer=_ignore_sigint) as pool:
                for result in pool.map(_decode_all, jobs, chunksize=16):
                    results.append(result)
                    if task is not None:
                        bar.advance(task)
        else:
            for job in jobs:
                results.append(_decode_all(job))
                if task is not None:
                    bar.advance(task)
        if task is not None:
            bar.remove_task(task)
        self._frames = results

    def nbytes(self) -> int:
        return sum(f.nbytes for f in self._frames or [] if isinstance(f, np.ndarray))

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor:
        if self._frames is None:
            return super()._load(index, generator)
        video = self._frames[index]
        if isinstance(video, VideoError):
            raise video
        num_frames = len(video)
        if self.train:
            return self.transform(video[self.sampler(num_frames, generator)], generator)
        clips, crops = self.views
        views = [self.transform(video[view]) for view in self.sampler.views(num_frames, clips)]
        stacked = torch.stack(views)  # [clips, crops, T, 3, S, S]
        return stacked.reshape(clips * crops, *stacked.shape[2:])
