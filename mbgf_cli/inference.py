"""Inference: the one path from video files to class scores and embeddings, shared by ``mbgf eval``,
``mbgf predict``, ``mbgf embed`` and ``mbgf search``.

    from mbgf_cli.inference import Predictor

    predictor = Predictor.from_checkpoint("runs/synthetic-tiny-clip-mbgf/best")
    result = predictor.predict(["my_videos/", "clip.mp4"])                       # the checkpoint's classes
    result = predictor.predict(["clip.mp4"], ["juggling balls", "riding a bike"])  # free text
    for video, top in zip(result.videos, result.top(3)):
        print(video, top[0].label, top[0].probability)
    vectors = predictor.embed(["my_videos/"]).vectors                             # [N, E], unit norm

What is shared, so that the commands agree with each other:
  model    ``load_model``: an mbgf checkpoint directory, any file ``mbgf convert`` reads (converted on
           the fly), or CLIP zero-shot from ``--pretrained`` (a CLIP name or an OpenAI-format file).
  text     ``Predictor.class_tokens``: class names or free text through the prompt templates the model
           was trained with (a converted checkpoint: its paper's), tokenized as ``mbgf eval`` does.
  views    ``mbgf_cli.data.dataset.load_test_views``: the decoding, TSN segment-centre sampling,
           resize, crops and normalisation of eval's ``VideoDataset``, here over any files
           (``VideoFiles``).
  scores   ``score_views``: every view through the model, softmax over classes per view, mean over
           views (eval's multi-view rule); ``mbgf eval``'s ``evaluate_loader`` calls it too.
  vectors  ``embed_views``: the unit-norm video embedding of every view, their mean, normalised again.

Videos that cannot be read are skipped and listed with the reason (``strict`` stops at the first one);
a video is never replaced by another one here, unlike in training and in ``mbgf eval``'s lists.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fusion.config import BRANCHES
from fusion.prompts import class_text_tokens
from mbgf_cli.console import console, err_console
from mbgf_cli.data.annotations import read_text
from mbgf_cli.errors import UserError, at

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
LIST_EXTENSIONS = (".txt",)


# --------------------------------------------------------------------------------------------------
# Which videos: files, folders, list files
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoInputs:
    """The videos to run on, in order: each as the user will see it (the path given, or folder/relative
    path), with its label where a list file gave one."""

    videos: list[str] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)


def collect_videos(inputs: Iterable, strict: bool = False) -> VideoInputs:
    """Expand ``inputs`` into videos: a folder gives every file with a video extension under it
    (recursively, sorted, hidden names skipped); a ``.txt`` file is a list (one path a line, an optional
    integer label after it; relative paths are looked up next to the list, then in its ``videos/``
    folder, the seed layout); anything else is a video. A path that does not exist is kept (and reported
    as missing when read), or refused with ``strict``. The same file twice is kept once."""
    collected = VideoInputs()
    seen: set[str] = set()

    def add(video: str, label: int | None):
        key = os.path.abspath(video)
        if key not in seen:
            seen.add(key)
            collected.videos.append(video)
            collected.labels.append(label)

    given = [str(item) for item in inputs]
    if not given:
        raise UserError("give one or more videos, folders or list files")
    for item in given:
        path = Path(item)
        if path.is_dir():
            for found in _videos_under(path):
                add(str(found), None)
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            for video, label in read_path_list(path):
                if strict and not Path(video).is_file():
                    raise UserError(f"{path}: lists {video}, which does not exist")
                add(video, label)
        else:
            if strict and not path.is_file():
                raise UserError(f"{item}: no such file or folder")
            add(item, None)
    if not collected.videos:
        raise UserError(f"no videos found in {', '.join(given)} (looked for {' '.join(VIDEO_EXTENSIONS)})")
    if not any(os.path.exists(video) for video in collected.videos):
        named = ", ".join(collected.videos[:3]) + (" ..." if len(collected.videos) > 3 else "")
        raise UserError(f"{named}: no such file{'s' if len(collected.videos) > 1 else ''} (nothing to run on)")
    return collected


def _videos_under(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if path.suffix.lower() in VIDEO_EXTENSIONS and not any(part.startswith(".") for part in relative) \
                and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_path_list(path: Path) -> list[tuple[str, int | None]]:
    """``[(video, label or None), ...]`` from a list file: ``path/to/video.mp4 [label]`` per line."""
    text = read_text(path)
    entries = []
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.rsplit(None, 1)
        label = None
        if len(fields) == 2 and re.fullmatch(r"[+-]?\d+", fields[1]):
            stripped, label = fields[0], int(fields[1])
            if label < 0:
                raise UserError(f"{at(path, line)}: label {label} is negative")
        video = Path(stripped)
        if not video.is_absolute():
            beside, in_videos = path.parent / video, path.parent / "videos" / video
            video = in_videos if not beside.exists() and in_videos.exists() else beside
        entries.append((str(video), label))
    if not entries:
        raise UserError(f"{path}: no videos listed (one path a line, optionally followed by a label)")
    return entries


# --------------------------------------------------------------------------------------------------
# Class names: the checkpoint's, a file, or free text
# --------------------------------------------------------------------------------------------------


def parse_classes(text: str, option: str = "--classes") -> list[str]:
    """Comma-separated names (``"juggling balls, riding a bike"``) as a list; blanks dropped."""
    names = [name.strip() for name in str(text).split(",")]
    names = [name for name in names if name]
    if not names:
        raise UserError(f"{option}: no names given (separate them with commas: \"juggling balls, riding a bike\")")
    return _unique(names, option)


def read_class_names(path) -> list[str]:
    """Class names from a labels file: ``id,name`` CSV (labels.csv), or one name a line."""
    from mbgf_cli.data import read_labels

    text = read_text(path)
    lines = [line.strip() for line in text.splitlines()]
    first = next((line for line in lines if line and not line.startswith("#")), None)
    if first is None:
        raise UserError(f"{path}: no class names")
    if first.replace(" ", "").lower() == "id,name" or re.match(r"\d+\s*,", first):
        return read_labels(path)
    names = []
    for number, line in enumerate(lines, start=1):
        if line and not line.startswith("#"):
            if line in names:
                raise UserError(f"{at(path, number)}: duplicate class name {line!r}")
            names.append(line)
    return names


def _unique(names: list[str], where: str) -> list[str]:
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"{where}: {name!r} is given twice")
        seen.add(name)
    return names


def resolve_classes(classes: str | Sequence[str] | None, labels_file, model_classes: list[str],
                    model_name: str) -> list[str]:
    """The classes to score against: free text (``--classes``), a labels file (``--labels``), else the
    model's own."""
    if classes is not None and labels_file is not None:
        raise UserError("give either --classes or --labels, not both")
    if classes is not None:
        return parse_classes(classes) if isinstance(classes, str) else _unique([str(c) for c in classes], "classes")
    if labels_file is not None:
        return read_class_names(labels_file)
    if model_classes:
        return list(model_classes)
    raise UserError(f"{model_name} carries no class names: give --classes \"a, b, ...\" or --labels FILE")


# --------------------------------------------------------------------------------------------------
# Models: a checkpoint, a foreign file, or zero-shot CLIP
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, enough to load it again (an embeddings file records it, so that
    ``mbgf search`` rebuilds the same text encoder). Exactly one of ``checkpoint`` (an mbgf checkpoint
    directory or any file ``mbgf convert`` reads) and ``pretrained`` (CLIP zero-shot: a CLIP name such
    as ViT-B/16, or an OpenAI-format weights file). ``model``, ``frames`` and ``input_size``: the
    zero-shot backbone (when the weights do not tell), frames per view and frame size."""

    checkpoint: str | None = None
    pretrained: str | None = None
    model: str | None = None
    frames: int | None = None
    input_size: int | None = None

    def __post_init__(self):
        if self.checkpoint and self.pretrained:
            raise UserError("give either --checkpoint or --pretrained, not both")
        if not self.checkpoint and not self.pretrained:
            raise UserError("give --checkpoint DIR (an mbgf checkpoint or a published file) or --pretrained NAME "
                            "(zero-shot CLIP, e.g. ViT-B/16)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelSource:
        return cls(**{k: values.get(k) for k in ("checkpoint", "pretrained", "model", "frames", "input_size")})

    def absolute(self) -> ModelSource:
        """The same source with file paths made absolute (what a file records, to be found from anywhere)."""
        def absolute(path):
            return os.path.abspath(os.path.expanduser(path)) if path and Path(path).expanduser().exists() else path

        return ModelSource(absolute(self.checkpoint), absolute(self.pretrained), self.model, self.frames,
                           self.input_size)

    def fingerprint(self) -> dict:
        """What identifies the weights without reading them: the source, and the weight file's size and
        modification time (a checkpoint rewritten by training is another model)."""
        source = self.absolute()
        described = source.to_dict()
        path = source.checkpoint or source.pretrained
        weights = Path(path)
        if weights.is_dir():
            weights = weights / "model.safetensors"
        if weights.is_file():
            stat = weights.stat()
            described["weights"] = {"file": str(weights), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return described


@dataclass
class LoadedModel:
    model: torch.nn.Module     # a fusion.VideoCLIP, in eval mode
    class_names: list[str]     # the checkpoint's classes ([] when it carries none)
    prompts: str               # "all" templates per class, or "one"
    templates: list[str] | None  # None: this project's own (fusion.prompts.TEMPLATES)
    name: str                  # for headers: "tiny CLIP+MBGF from runs/x/best (epoch 30)"
    source: ModelSource


def load_model(source: ModelSource, prompts: str | None = None, strict: bool = True) -> LoadedModel:
    """Load the model ``source`` names. ``prompts``: "all" | "one", default as the checkpoint was trained
    (templates: a converted checkpoint's paper's, unless ``prompts`` is given)."""
    from mbgf_cli import interop

    if prompts not in (None, "all", "one"):
        raise UserError(f"--prompts must be 'all' or 'one', not {prompts!r}")
    if source.pretrained:
        model = pretrained_model(source.pretrained, source.model, source.frames or 8, source.input_size)
        return LoadedModel(model, [], prompts or "all", None, f"zero-shot {model.config.name} ({source.pretrained})",
                           source)
    # An mbgf checkpoint folder, or an OpenAI / ActionCLIP / X-CLIP file converted on the fly.
    model, meta = interop.load_any_checkpoint(source.checkpoint, frames=source.frames, strict=strict)
    recorded = (meta.get("train") or {}).get("prompts")
    # A converted checkpoint is tested with the prompts its own paper tested with.
    templates = None if prompts else meta.get("prompt_templates")
    name = f"{model.config.name} from {source.checkpoint} (epoch {meta.get('epoch')})"
    return LoadedModel(model.eval(), list(meta.get("class_names") or []), prompts or recorded or "all", templates,
                       name, source)


def pretrained_model(pretrained: str, backbone: str | None = None, frames: int = 8, input_size: int | None = None):
    """CLIP with mean pooling over frames and no training: any classes, through its text encoder."""
    import clip.loading
    import fusion

    try:
        clip_model = clip.loading.load(pretrained)
    except ValueError as e:
        raise UserError(str(e)) from None
    if backbone is None:
        for key, candidate in fusion.BACKBONES.items():
            expected, got = candidate.clip_config, clip_model.config
            if (expected.vision_width, expected.vision_layers, expected.vision_patch_size, expected.embed_dim) == \
                    (got.vision_width, got.vision_layers, got.vision_patch_size, got.embed_dim):
                backbone = key
                break
        else:
            raise UserError(f"{pretrained}: not one of the known backbones; give --model")
    try:
        return fusion.build_video_model(model=backbone, variant="clip", mbgf=False, frames=frames,
                                        input_size=input_size, clip_model=clip_model).eval()
    except ValueError as e:
        raise UserError(f"{pretrained}: {e}") from None


def require_gates(model) -> None:
    """``--explain`` shows MBGF's gate: refuse, before any work, a model that has none."""
    from mbgf_cli.checkpoint import unwrap

    if getattr(unwrap(model), "mbgf", None) is None:
        raise UserError("--explain needs an MBGF model (this one has no gates)")


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here")
    return resolved


def parse_views(text: str) -> tuple[int, int]:
    """``--views CLIPSxCROPS`` (``4x3``: 4 temporal clips x 3 spatial crops) as ``(clips, crops)``."""
    try:
        clips, crops = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--views {text!r}: expected CLIPSxCROPS, e.g. 1x1 or 4x3") from None
    if clips < 1 or crops not in (1, 3):
        raise UserError(f"--views {text!r}: clips must be at least 1 and crops 1 or 3")
    return clips, crops


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ThreadShare:
    """The model's intra-op threads on a CPU whose cores the loader's decoding processes share.

    While the model waits for its batches, the decoders are the bottleneck and keep their cores busy:
    the model takes the cores they leave (at least one), since an intra-op thread that waits for a busy
    core holds up all the others. While every batch is ready when the model asks for it, the decoders
    sit on a full queue most of the time: the model takes every core. ``update`` after each batch
    moves between the two, with a gap between the thresholds so that it does not flap.
    """

    AHEAD = 0.02   # waited under 2% of the model's time: the decoders are ahead
    BEHIND = 0.10  # waited over 10%: the decoders are the bottleneck

    def __init__(self, workers: int):
        self.original = torch.get_num_threads()
        self.shared = max(1, min(self.original, available_cpus() - workers))
        self.threads = self.shared
        torch.set_num_threads(self.threads)

    def update(self, waited: float, worked: float) -> None:
        if waited < self.AHEAD * worked:
            wanted = self.original
        elif waited > self.BEHIND * worked:
            wanted = self.shared
        else:
            return
        if wanted != self.threads:
            self.threads = wanted
            torch.set_num_threads(wanted)

    def restore(self) -> None:
        torch.set_num_threads(self.original)


def sharing_cores(batches: Iterable, workers: int, device: torch.device) -> Iterator:
    """``batches`` (from a loader with ``workers`` processes) one by one, the model's CPU threads set
    between them by a ``ThreadShare`` from how long each batch was waited for and worked on (nothing to
    share on a GPU or without worker processes)."""
    if torch.device(device).type != "cpu" or workers == 0:
        yield from batches
        return
    share = ThreadShare(workers)
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
# The forward pass over views, shared with `mbgf eval`
# --------------------------------------------------------------------------------------------------


class ViewScores(NamedTuple):
    probs: torch.Tensor        # [B, K] softmax over classes, averaged over views (eval's score)
    logits: torch.Tensor       # [B, K] logits averaged over views
    gates: torch.Tensor | None  # [B, 3] MBGF gate weights averaged over views (with explain)


@torch.no_grad()
def score_views(model, views: torch.Tensor, class_tokens: torch.Tensor, autocast=None,
                explain: bool = False) -> ViewScores:
    """Class scores of a batch of videos ``[B, V, T, 3, H, W]`` (V views each): all B x V clips in one
    forward pass, softmax per view, mean over a video's views."""
    b, v = views.shape[:2]
    clips = views.flatten(0, 1)
    with autocast or nullcontext():
        if explain:
            logits, details = model(clips, class_tokens, return_details=True)
        else:
            logits = model(clips, class_tokens)
    logits = logits.float().view(b, v, -1)
    gates = None
    if explain:
        if "gates" not in details:
            raise UserError("--explain needs an MBGF model (this one has no gates)")
        gates = details["gates"].float().view(b, v, -1).mean(dim=1)
    return ViewScores(logits.softmax(dim=-1).mean(dim=1), logits.mean(dim=1), gates)


@torch.no_grad()
def embed_views(model, views: torch.Tensor, autocast=None) -> torch.Tensor:
    """Unit-norm video embeddings ``[B, E]`` of a batch ``[B, V, T, 3, H, W]``: each view's
    ``encode_video`` normalised, averaged over the views, normalised again (one view: just normalised)."""
    b, v = views.shape[:2]
    with autocast or nullcontext():
        video = model.encode_video(views.flatten(0, 1))
    video = F.normalize(video.float(), dim=-1).view(b, v, -1).mean(dim=1)
    return F.normalize(video, dim=-1)


@torch.no_grad()
def text_embeddings(model, tokens: torch.Tensor, autocast=None) -> torch.Tensor:
    """Unit-norm text embeddings ``[K, E]`` of class tokens ``[K, L]`` or ``[K, P, L]`` (P templates:
    their features averaged, the prompt ensemble of the ``mean_text`` recipe)."""
    with autocast or nullcontext():
        text = model.encode_text(tokens)
    if tokens.dim() == 3:
        text = text.float().mean(dim=1)
    return F.normalize(text.float(), dim=-1)


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


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


class Ranked(NamedTuple):
    id: int
    label: str
    probability: float


@dataclass
class Predictions:
    """What ``Predictor.predict`` returns. Rows follow ``videos`` (the videos that could be read, in
    input order); ``skipped`` lists the others with the reason."""

    videos: list[str]
    class_names: list[str]
    probs: torch.Tensor        # [N, K] softmax over the classes, averaged over views (eval's score)
    logits: torch.Tensor       # [N, K] logits averaged over views
    skipped: list[tuple[str, str]]
    labels: list[int | None]   # from a list file, where it gave them
    gates: torch.Tensor | None = None  # [N, 3] MBGF gate weights (appearance, temporal, motion)

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def top(self, k: int = 5) -> list[list[Ranked]]:
        k = max(1, min(k, len(self.class_names)))
        values, indices = self.probs.topk(k, dim=1) if len(self.videos) else (torch.zeros(0, k), torch.zeros(0, k))
        return [[Ranked(int(i), self.class_names[int(i)], float(p)) for p, i in zip(row_p, row_i, strict=True)]
                for row_p, row_i in zip(values, indices.long(), strict=True)]

    def accuracy(self) -> tuple[int, int] | None:
        """(correct top-1, labelled videos) when every scored video has a label in range, else None."""
        if not self.videos or any(label is None or label >= len(self.class_names) for label in self.labels):
            return None
        correct = sum(int(p) == label for p, label in zip(self.predictions.tolist(), self.labels, strict=True))
        return correct, len(self.videos)

    def to_json(self, k: int = 5) -> dict:
        videos = []
        for i, (video, top) in enumerate(zip(self.videos, self.top(k), strict=True)):
            row = {"video": video, "top": [{"id": r.id, "label": r.label, "probability": round(r.probability, 6)}
                                           for r in top]}
            if self.gates is not None:
                row["gates"] = {branch: round(float(g), 6) for branch, g in zip(BRANCHES, self.gates[i], strict=True)}
            videos.append(row)
        return {"videos": videos, "skipped": [video for video, _ in self.skipped]}

    def csv_text(self, k: int = 5) -> str:
        """``video,rank,id,label,probability``: one row per video and rank."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["video", "rank", "id", "label", "probability"])
        for video, top in zip(self.videos, self.top(k), strict=True):
            for rank, r in enumerate(top, start=1):
                writer.writerow([video, rank, r.id, r.label, f"{r.probability:.6f}"])
        return buffer.getvalue()


@dataclass
class VideoEmbeddings:
    videos: list[str]              # the videos that could be read, in input order
    vectors: torch.Tensor          # [N, E] unit-norm video embeddings
    skipped: list[tuple[str, str]]  # (video, reason)


# --------------------------------------------------------------------------------------------------
# The Python API
# --------------------------------------------------------------------------------------------------


class Predictor:
    """A video model ready for inference: classify video files, or embed them.

    ``Predictor.from_checkpoint(path)`` (an mbgf checkpoint or any file ``mbgf convert`` reads) or
    ``Predictor.from_pretrained("ViT-B/16")`` (zero-shot CLIP). ``predict(videos, classes)``: videos are
    paths of files, folders or list files; classes are names (free text) or None for the checkpoint's.
    """

    def __init__(self, loaded: LoadedModel, device: str | torch.device | None = None, amp: str = "auto",
                 compile: bool = False):
        from mbgf_cli.precision import choose_amp

        self.loaded = loaded
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.model = loaded.model.to(self.device).eval()
        dtype, self.precision = choose_amp(amp, self.device, self.model.config.model)  # precision: why, in words
        self.autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else None
        if compile:  # torch.compile the video encoder in place; the model's weights and keys are unchanged
            from mbgf_cli.compilation import compile_video_model

            compile_video_model(self.model)

    @classmethod
    def from_source(cls, source: ModelSource, prompts: str | None = None, device=None, amp: str = "auto",
                    strict: bool = True, compile: bool = False) -> Predictor:
        return cls(load_model(source, prompts, strict), device, amp, compile)

    @classmethod
    def from_checkpoint(cls, path, device=None, amp: str = "auto", prompts: str | None = None,
                        strict: bool = True) -> Predictor:
        return cls.from_source(ModelSource(checkpoint=str(path)), prompts, device, amp, strict)

    @classmethod
    def from_pretrained(cls, name, model: str | None = None, frames: int = 8, input_size: int | None = None,
                        device=None, amp: str = "auto", prompts: str | None = None) -> Predictor:
        return cls.from_source(ModelSource(pretrained=str(name), model=model, frames=frames, input_size=input_size),
                               prompts, device, amp)

    # ---- what the model is

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def config(self):
        return self.model.config

    def class_tokens(self, names: Sequence[str]) -> torch.Tensor:
        """Token ids of ``names`` through the model's prompt templates: ``[K, P, L]`` or ``[K, L]``."""
        return class_text_tokens(list(names), self.loaded.prompts, self.loaded.templates).to(self.device)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings ``[M, E]`` of ``texts`` put through the model's prompt templates,
        as class names are (so a text's embedding is its class embedding in ``predict``)."""
        return text_embeddings(self.model, self.class_tokens(texts), self.autocast).cpu()

    def files(self, videos: Sequence[str], views: tuple[int, int] = (1, 1), decoder: str = "auto",
              strict: bool = False) -> VideoFiles:
        config = self.config
        return VideoFiles(videos, config.frames, config.input_size, views, decoder, config.input_mean,
                          config.input_std, strict)

    # ---- work

    def _videos(self, videos, strict: bool) -> VideoInputs:
        if isinstance(videos, VideoInputs):
            return videos
        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]
        return collect_videos(videos, strict)

    def stream(self, dataset: VideoFiles, batches: list[list[int]], workers: int | None = None, bar=None,
               description: str = "videos") -> Iterator:
        """Yield ``(views on the device or None, indices, [(index, reason), ...])`` for each of ``batches``
        (lists of ``dataset`` indices), in order, decoded by ``workers`` processes (None: the default)."""
        workers = default_workers(self.device) if workers is None else workers
        task = bar.add_task(description, total=sum(len(b) for b in batches), info="") if bar is not None else None
        skipped = 0
        try:
            for views, indices, failures in sharing_cores(iterate_batches(dataset, batches, workers), workers,
                                                          self.device):
                if views is not None:
                    views = dataset.normalize(views.to(self.device, non_blocking=True))
                yield views, indices, failures
                if task is not None:
                    skipped += len(failures)
                    bar.update(task, advance=len(indices) + len(failures), info=f"{skipped} skipped" if skipped else "")
        finally:
            if task is not None:
                bar.remove_task(task)

    def run(self, dataset: VideoFiles, batches: list[list[int]], workers: int | None, step, bar=None,
            description: str = "videos") -> dict[int, str]:
        """Feed ``batches`` of ``dataset`` to ``step(views on the device, indices)``; returns the
        ``{index: reason}`` of the videos that could not be read."""
        failed = {}
        for views, indices, failures in self.stream(dataset, batches, workers, bar, description):
            failed.update(failures)
            if views is not None:
                step(views, indices)
        return failed

    def predict(self, videos, classes: str | Sequence[str] | None = None, views: tuple[int, int] = (1, 1),
                batch_size: int = 8, workers: int | None = None, decoder: str = "auto", strict: bool = False,
                explain: bool = False, labels_file=None, bar=None) -> Predictions:
        """Classify ``videos`` (paths of files, folders, list files) against ``classes`` (names, a
        comma-separated string, or None: ``labels_file``'s, else the checkpoint's)."""
        inputs = self._videos(videos, strict)
        names = resolve_classes(classes, labels_file, self.class_names, self.name)
        if explain:
            require_gates(self.model)
        tokens = self.class_tokens(names)
        dataset = self.files(inputs.videos, views, decoder, strict)
        rows: dict[int, ViewScores] = {}

        def step(batch, indices):
            scores = score_views(self.model, batch, tokens, self.autocast, explain)
            for row, index in enumerate(indices):
                rows[index] = ViewScores(scores.probs[row].cpu(), scores.logits[row].cpu(),
                                         None if scores.gates is None else scores.gates[row].cpu())

        failed = self.run(dataset, chunks(range(len(inputs)), _positive(batch_size, "--batch-size")), workers, step,
                          bar, "predict")
        order = sorted(rows)
        k = len(names)
        return Predictions(
            videos=[inputs.videos[i] for i in order], class_names=names,
            probs=torch.stack([rows[i].probs for i in order]) if order else torch.zeros(0, k),
            logits=torch.stack([rows[i].logits for i in order]) if order else torch.zeros(0, k),
            skipped=[(inputs.videos[i], failed[i]) for i in sorted(failed)],
            labels=[inputs.labels[i] for i in order],
            gates=(torch.stack([rows[i].gates for i in order]) if order else torch.zeros(0, 3)) if explain else None,
        )

    def timeline(self, video, classes: str | Sequence[str] | None = None, window: float = 2.0, stride: float = 1.0,
                 top_k: int = 5, crops: int = 1, batch_size: int = 8, labels_file=None, bar=None, stats=None):
        """Class probabilities per ``window`` seconds of one video file, every ``stride`` seconds: a
        ``mbgf_cli.timeline.VideoTimeline`` (``.to_json()``: ``{"video", "windows": [{"start", "end",
        "top": [{"id", "label", "probability"}]}]}``). ``stats``: a ``DecodeStats`` to count into."""
        from mbgf_cli import timeline

        timeline.check_timeline(window, stride, top_k, batch_size, crops)
        names = resolve_classes(classes, labels_file, self.class_names, self.name)
        tokens = self.class_tokens(names)

        def scores(views):
            return score_views(self.model, views, tokens, self.autocast).probs

        return timeline.video_timeline(self, video, names, scores, window, stride, top_k, crops, batch_size, stats,
                                       bar)

    def embed(self, videos, views: tuple[int, int] = (1, 1), batch_size: int = 8, workers: int | None = None,
              decoder: str = "auto", strict: bool = False, bar=None) -> VideoEmbeddings:
        """Unit-norm video embeddings of ``videos`` (files, folders, list files), in order."""
        inputs = self._videos(videos, strict)
        dataset = self.files(inputs.videos, views, decoder, strict)
        vectors = {}

        def step(batch, indices):
            for index, vector in zip(indices, embed_views(self.model, batch, self.autocast).cpu(), strict=True):
                vectors[index] = vector

        failed = self.run(dataset, chunks(range(len(inputs)), _positive(batch_size, "--batch-size")), workers, step,
                          bar, "embed")
        order = sorted(vectors)
        width = self.model.clip_config.embed_dim
        return VideoEmbeddings([inputs.videos[i] for i in order],
                               torch.stack([vectors[i] for i in order]) if order else torch.zeros(0, width),
                               [(inputs.videos[i], failed[i]) for i in sorted(failed)])


def _positive(value: int, option: str) -> int:
    if value < 1:
        raise UserError(f"{option} must be at least 1, not {value}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# `mbgf predict`
# --------------------------------------------------------------------------------------------------


@dataclass
class PredictConfig:
    inputs: list[str]
    checkpoint: str | None = None
    pretrained: str | None = None
    model: str | None = None       # zero-shot: the backbone, when the weights do not say
    frames: int | None = None      # zero-shot (default 8)
    input_size: int | None = None  # zero-shot
    labels: str | None = None
    classes: str | None = None
    prompts: str | None = None
    top_k: int = 5
    views: str = "1x1"
    batch_size: int = 8
    workers: int | None = None
    device: str | None = None
    decoder: str = "auto"
    strict: bool = False
    amp: str = "auto"
    compile: bool = False
    explain: bool = False
    csv: str | None = None
    as_json: bool = False
    timeline: bool = False         # scores per window (mbgf_cli.timeline)
    window: float | None = None    # --timeline: seconds (default 2)
    stride: float | None = None    # --timeline: seconds (default 1)
    plot: str | None = None        # --timeline: a PNG of class probability over time


def predict(cfg: PredictConfig) -> tuple[Predictions, dict]:
    """Run ``mbgf predict``: every check that a user can fail happens before the model runs."""
    from mbgf_cli.console import progress

    views = parse_views(cfg.views)
    _positive(cfg.top_k, "--top-k")
    _positive(cfg.batch_size, "--batch-size")
    source = ModelSource(cfg.checkpoint, cfg.pretrained, cfg.model, cfg.frames, cfg.input_size)
    if cfg.csv and Path(cfg.csv).is_dir():
        raise UserError(f"--csv {cfg.csv}: is a folder (give a file name)")
    inputs = collect_videos(cfg.inputs, cfg.strict)
    predictor = Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    names = resolve_classes(cfg.classes, cfg.labels, predictor.class_names, predictor.name)
    if cfg.explain:
        require_gates(predictor.model)
    with progress(transient=True) as bar:
        result = predictor.predict(inputs, names, views, cfg.batch_size, cfg.workers, cfg.decoder, cfg.strict,
                                   cfg.explain, bar=bar)
    if cfg.csv:
        from mbgf_cli.fileio import atomic_write_text

        Path(cfg.csv).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg.csv, result.csv_text(cfg.top_k))
    return result, {"model": predictor.name, "views": f"{views[0]}x{views[1]}"}


def print_predictions(result: Predictions, info: dict, cfg: PredictConfig) -> None:
    from rich.markup import escape
    from rich.table import Table

    if cfg.as_json:
        console.print_json(json.dumps(result.to_json(cfg.top_k)))
        return
    k = min(cfg.top_k, len(result.class_names))
    table = Table(title=f"{info['model']} ({info['views']} views): top-{k} of {len(result.class_names)} classes",
                  title_justify="left", show_lines=k > 1)
    table.add_column("video", overflow="fold")
    table.add_column("class")
    table.add_column("probability", justify="right")
    if result.gates is not None:
        for branch in BRANCHES:
            table.add_column(branch, justify="right")
    for i, (video, top) in enumerate(zip(result.videos, result.top(k), strict=True)):
        row = [escape(video), "\n".join(escape(r.label) for r in top), "\n".join(f"{r.probability:.3f}" for r in top)]
        if result.gates is not None:
            row += [f"{float(g):.3f}" for g in result.gates[i]]
        table.add_row(*row)
    console.print(table)
    accuracy = result.accuracy()
    if accuracy is not None:
        correct, total = accuracy
        err_console.print(f"top-1 against the list's labels: {100 * correct / total:.1f}% ({correct} of {total})",
                          highlight=False)
    if result.skipped:
        named = ", ".join(f"{video} ({reason})" for video, reason in result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        err_console.print(f"[yellow]{len(result.skipped)} video(s) skipped (not readable):[/yellow] "
                          f"{escape(named)}{more}", highlight=False, soft_wrap=True)
    if cfg.csv:
        err_console.print(f"predictions written to {cfg.csv}", highlight=False)
