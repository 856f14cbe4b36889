"""The video dataset and its DataLoader.

    ds = VideoDataset("data/ucf101", "train.txt", num_classes=101, frames=8, input_size=224, train=True)
    loader = build_loader(ds, batch_size=32, workers=8, shuffle=True, drop_last=True, distributed=False, seed=0)
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch, start_batch=resume_batch if epoch == start_epoch else 0)
        for clips, labels, indices in loader: ...
        line = ds.skipped_summary(run_dir / "skipped.txt")    # "3 videos skipped, list written to ..."

Items and batches
  train   ``(clip float [T, 3, S, S], label, index)``      batch ``[B, T, 3, S, S]``, ``[B]``, ``[B]``
  test    ``(views float [V, T, 3, S, S], label, index)``  batch ``[B, V, T, 3, S, S]``, ``[B]``, ``[B]``
          V = clips * crops, view v = clip * crops + crop (clips: temporal, crops: spatial);
          average the V predictions of a row to get the video's.
  Clips are normalised with CLIP's mean/std. ``index`` is the list position of the video the item
  holds (another one's when the requested video failed and was replaced, see below).

Root: a dataset folder with ``videos/``, ``videos.tar`` or ``videos.zip``, or the videos folder or
archive itself (``mbgf_cli.data.sources``). A relative ``list_file`` that does not exist as given is
looked up in the root folder, so ``VideoDataset("data/ucf101", "train.txt", ...)`` works.

Determinism: all train-time randomness of an item (frame offsets, crop, flip, colour jitter, and
the choice of a replacement video) comes from a ``torch.Generator`` seeded with (seed, epoch,
index). The sampler passes the epoch with every index, so persistent workers, any number of
workers, DDP ranks and a run resumed mid-epoch all produce exactly the same clips.

Failures: a listed video that is missing, empty or cannot be decoded is replaced by another video
of the list, chosen from the same generator (so deterministically), and recorded as a marker file
in ``failures_dir`` (one file per video, created exclusively, which also makes the warning appear
once however many worker processes meet the video). Any process can read the record:
``ds.failures()``, ``ds.write_failures(path)``, ``ds.skipped_summary(path)``. Give several ranks the
same ``failures_dir`` to count them together. ``strict=True`` raises a ``UserError`` naming the list
file and line at the first failure instead. Listed videos that do not exist are found when the
dataset is built and reported together in one warning (``strict``: one error).
"""

import hashlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mbgf_cli.console import err_console
from mbgf_cli.data.annotations import missing_entries_message, read_video_list_entries
from mbgf_cli.data.readers import DECODERS, VideoError, read_frames
from mbgf_cli.data.sampling import FrameSampler
from mbgf_cli.data.sources import open_source
from mbgf_cli.data.transforms import CLIP_MEAN, CLIP_STD, TestTransform, TrainTransform
from mbgf_cli.errors import UserError, at
from mbgf_cli.fileio import atomic_write_text


def item_seed(*keys: int) -> int:
    """A well-mixed 64-bit seed from small integers (seed, epoch, index, attempt): splitmix64 over
    the keys, so neighbouring indices or epochs give unrelated random streams."""
    state = 0x9E3779B97F4A7C15
    for key in keys:
        state = (state ^ (int(key) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state


_MASK64 = (1 << 64) - 1


def item_generator(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(item_seed(*keys))


def _remove_if_owner(path: str, owner_pid: int):
    # Forked DataLoader workers inherit this finalizer; only the process that made the folder removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


class VideoDataset(Dataset):
    """Clips of the videos of one list (see the module docstring for items, determinism, failures).

    frames       T, frames per clip (TSN segments)
    input_size   S, the square side of the output
    train        random clip + augmentation (True) or deterministic views (False)
    views        (clips, crops) at test time: temporal clips x spatial crops (1 or 3)
    decoder      "auto" (decord, PyAV fallback) | "decord" | "pyav"
    flip         random horizontal flip at train time (False for direction-sensitive data)
    crop         train crop: "multiscale" | "random_resized" | "center"
    jitter, gray probabilities of colour jitter and of grayscale at train time (0 disables)
    test_resize  "input" (short side to S) | "256/224" (short side to S*256/224)
    mean, std    per-channel normalisation on the 0-1 scale (CLIP's by default; a converted X-CLIP
                 checkpoint records ImageNet's, and the model's config carries them here)
    """

    def __init__(
        self,
        root,
        list_file,
        num_classes: int,
        frames: int = 8,
        input_size: int = 224,
        train: bool = True,
        views: tuple[int, int] = (1, 1),
        decoder: str = "auto",
        strict: bool = False,
        seed: int = 0,
        flip: bool = True,
        crop: str = "multiscale",
        jitter: float = 0.8,
        gray: float = 0.2,
        test_resize: str = "input",
        failures_dir=None,
        max_replacements: int = 20,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
    ):
        if decoder not in DECODERS:
            raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        clips, crops = views
        if clips < 1 or crops not in (1, 3):
            raise UserError(f"views must be (clips >= 1, crops 1 or 3), got {views}")
        self.root = Path(root)
        self.source = open_source(root)
        self.list_file = self._find_list(list_file)
        entries = read_video_list_entries(self.list_file, num_classes)
        self.samples = [(e.path, e.label) for e in entries]
        self.lines = [e.line for e in entries]
        self.num_classes = num_classes
        self.train = train
        self.views = (clips, crops)
        self.decoder = decoder
        self.strict = strict
        self.seed = seed
        self.epoch = 0
        self.max_replacements = max_replacements
        try:
            self.sampler = FrameSampler(frames)
            if train:
                self.transform = TrainTransform(input_size, crop=crop, flip=flip, jitter=jitter, gray=gray,
                                                mean=tuple(mean), std=tuple(std))
            else:
                self.transform = TestTransform(input_size, crops=crops, resize=test_resize, mean=tuple(mean),
                                               std=tuple(std))
        except ValueError as e:
            raise UserError(str(e)) from None

        if failures_dir is None:
            failures_dir = tempfile.mkdtemp(prefix="mbgf-skipped-")
            weakref.finalize(self, _remove_if_owner, failures_dir, os.getpid())
        self.failures_dir = Path(failures_dir)
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        self._bad: set[int] = set()  # indices this process knows to be unreadable
        self._check_missing(entries)

    def _find_list(self, list_file) -> Path:
        path = Path(list_file)
        if not path.exists() and not path.is_absolute() and (self.root / path).exists():
            return self.root / path
        return path

    def _check_missing(self, entries):
        missing = [(i, e) for i, e in enumerate(entries) if e.path not in self.source]
        if not missing:
            return
        message = missing_entries_message(self.list_file, [e for _, e in missing], self.source.where)
        if self.strict or len(missing) == len(entries):
            raise UserError(message)
        err_console.print(f"[yellow]warning:[/yellow] {message}; they will be skipped", highlight=False, soft_wrap=True)
        for i, _ in missing:
            self._record_failure(i, VideoError("missing"), warn=False)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int):
        """The epoch used for items requested by a plain index (the loader's sampler passes its own)."""
        self.epoch = int(epoch)

    def __getitem__(self, key):
        # The sampler yields (index, epoch) so that persistent workers need no message to change epoch.
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), self.epoch)
        if not self.train:
            epoch = 0  # test views do not change between epochs
        candidate = index
        for attempt in range(self.max_replacements + 1):
            generator = item_generator(self.seed, epoch, index, attempt)
            if attempt > 0:
                # A deterministic replacement: any other video of the list, drawn from the same generator.
                candidate = (index + 1 + int(torch.randint(len(self) - 1, (), generator=generator))) % len(self)
            if not self._known_bad(candidate):
                try:
                    return self._load(candidate, generator), self.samples[candidate][1], candidate
                except VideoError as e:
                    if self.strict:
                        path = self.samples[candidate][0]
                        raise UserError(f"{at(self.list_file, self.lines[candidate])}: cannot read video {path}: {e}") from None
                    self._record_failure(candidate, e)
            if len(self) == 1:
                break
        raise UserError(
            f"{self.list_file}: {self.max_replacements + 1} videos in a row could not be read "
            f"(starting at line {self.lines[index]}); see {self.failures_dir}"
        )

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor:
        path = self.samples[index][0]
        if self.train:
            frames, _ = read_frames(self.source, path, lambda n: self.sampler(n, generator), self.decoder)
            return self.transform(frames, generator)
        return load_test_views(self.source, path, self.sampler, self.transform, self.views[0], self.decoder)

    # Failure record: one marker file per failed video in failures_dir (shared by all workers).

    def _marker(self, index: int) -> Path:
        digest = hashlib.sha1(self.samples[index][0].encode("utf-8")).hexdigest()[:24]
        return self.failures_dir / f"{digest}.txt"

    def _known_bad(self, index: int) -> bool:
        # Per process: a worker that has not met a bad video yet tries it once itself (a failed open
        # costs about a millisecond) rather than looking for markers on every item.
        return index in self._bad

    def _record_failure(self, index: int, error: VideoError, warn: bool = True):
        self._bad.add(index)
        path = self.samples[index][0]
        try:
            fd = os.open(self._marker(index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # another worker got there first and has said so
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{path}\t{error}\t{self.list_file}:{self.lines[index]}\n")
        if warn:
            err_console.print(
                f"[yellow]warning:[/yellow] skipping {self.source.where}/{path} "
                f"({at(self.list_file, self.lines[index])}): {error}; replaced by another video",
                highlight=False,
                soft_wrap=True,
            )

    def failures(self) -> list[tuple[str, str]]:
        """``[(path, reason), ...]`` of every video skipped so far, by any process, sorted by path."""
        found = []
        for marker in self.failures_dir.glob("*.txt"):
            try:
                fields = marker.read_text(encoding="utf-8").rstrip("\n").split("\t")
            except OSError:
                continue
            if len(fields) >= 2:
                found.append((fields[0], fields[1]))
        return sorted(found)

    def write_failures(self, path) -> int:
        """Write ``path<TAB>reason`` lines of the skipped videos to ``path``; returns their number."""
        failures = self.failures()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(f"{p}\t{r}\n" for p, r in failures))
        return len(failures)

    def skipped_summary(self, path) -> str | None:
        """Write the skipped list to ``path`` and return the line to print, or None when nothing was skipped."""
        if not self.failures():
            return None
        count = self.write_failures(path)
        return f"{count} video{'s' if count != 1 else ''} skipped, list written to {path}"


def load_test_views(source, name: str, sampler: FrameSampler, transform: TestTransform, clips: int,
                    decoder: str = "auto") -> torch.Tensor:
    """The deterministic test views of one video, ``[clips * crops, T, 3, S, S]`` (view = clip * crops +
    crop): what ``mbgf eval`` (through ``VideoDataset``) and ``mbgf predict``/``embed`` read. Raises
    ``VideoError``."""
    # One decode for all temporal clips: the union of their frames, then split.
    plan = {}

    def pick(n):
        plan["views"] = sampler.views(n, clips)
        return sorted({i for view in plan["views"] for i in view})

    frames, _ = read_frames(source, name, pick, decoder)
    wanted = sorted({i for view in plan["views"] for i in view})
    row = {i: k for k, i in enumerate(wanted)}
    views = [transform(frames[[row[i] for i in view]]) for view in plan["views"]]  # each [crops, T, 3, S, S]
    stacked = torch.stack(views)  # [clips, crops, T, 3, S, S]
    return stacked.reshape(-1, *stacked.shape[2:])


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (one replica when not distributed) that yields ``(index, epoch)`` and
    can start an epoch at a given batch.

    ``set_epoch(epoch, start_batch)``: the order of the epoch is the same as without a start
    (seeded by seed + epoch); the first ``start_batch * batch_size`` indices of this rank are skipped,
    so the loader yields exactly the batches an interrupted run had not finished. ``len(sampler)``
    and ``len(loader)`` count what is left. The start applies to every later pass over the sampler
    until ``set_epoch`` is called again.
    """

    def __init__(self, dataset, batch_size: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.batch_size = batch_size
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        super().set_epoch(epoch)
        self.start_batch = int(start_batch)

    def rank_indices(self) -> list[int]:
        """This rank's full order for the current epoch (before skipping)."""
        return list(super().__iter__())

    def __iter__(self):
        skip = self.start_batch * self.batch_size
        return ((i, self.epoch) for i in self.rank_indices()[skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_batch * self.batch_size)


class VideoLoader(DataLoader):
    """A DataLoader with ``set_epoch(epoch, start_batch=0)`` and one-line errors from workers."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_batch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except UserError as e:
                raise UserError(_worker_message(e)) from None
            yield batch


def _worker_message(e: Exception) -> str:
    # DataLoader re-raises a worker's exception with the worker's traceback as its message; keep the
    # original message (the last line, "mbgf_cli.errors.UserError: <message>").
    text = str(e)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split("UserError: ", 1)[1] if "UserError: " in last else last


def _worker_init(_worker_id: int):
    # Each worker decodes one video at a time; more threads per worker only fight over the cores.
    torch.set_num_threads(1)


def build_loader(
    dataset,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    distributed: bool = False,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    prefetch_factor: int = 2,
) -> VideoLoader:
    """The DataLoader for a ``VideoDataset``: a ``ResumableSampler`` (a DistributedSampler over the
    process group's ranks when ``distributed``), pinned memory when CUDA is present, persistent
    workers when ``workers > 0``. Call ``loader.set_epoch(epoch, start_batch)`` before each epoch.

    With ``distributed`` each rank gets ``ceil(len / world)`` items (the last padded by repeating
    items, unless ``drop_last``), as ``DistributedSampler`` does.
    """
    if distributed:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise UserError("distributed loading needs an initialised process group (run under torchrun)")
        replicas, rank = dist.get_world_size(), dist.get_rank()
    else:
        replicas, rank = 1, 0
    sampler = ResumableSampler(dataset, batch_size, replicas, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch, start_batch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return VideoLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=_worker_init if workers > 0 else None,
    )
