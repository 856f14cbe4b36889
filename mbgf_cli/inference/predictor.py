"""The model side of inference: where a model comes from (:class:`ModelSource`), loading it, the
forward pass over views (scores, video and text embeddings), and :class:`Predictor`, on which
``mbgf eval``, ``mbgf predict``, ``mbgf embed`` and ``mbgf search`` are all built."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fusion.prompts import class_text_tokens
from mbgf_cli.errors import UserError
from mbgf_cli.inference.inputs import VideoInputs, collect_videos, resolve_classes
from mbgf_cli.inference.results import Predictions, VideoEmbeddings
from mbgf_cli.inference.runtime import VideoFiles, chunks, default_workers, iterate_batches, sharing_cores

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
        if self.checkpoint:
            object.__setattr__(self, "checkpoint", checkpoint_folder(self.checkpoint))

    @classmethod
    def of(cls, options) -> ModelSource:
        """The source a command's ``ModelSourceOptions`` name."""
        return cls(options.checkpoint, options.pretrained, options.model, options.frames, options.input_size)

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


def checkpoint_folder(path: str) -> str:
    """``--checkpoint``: a run folder (``runs/x``, holding ``best/``) is taken as its ``best/``."""
    folder = Path(path).expanduser()
    if folder.is_dir() and not (folder / "model.safetensors").exists() and (folder / "best" / "model.safetensors").exists():
        return str(Path(path) / "best")
    return path


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
    if str(source.checkpoint).lower().endswith(".onnx"):  # mbgf export --format onnx: run by onnxruntime
        from mbgf_cli.interop.onnx import load_onnx

        onnx = load_onnx(source.checkpoint, prompts, source.frames, source.input_size)
        return LoadedModel(onnx.model, onnx.class_names, onnx.prompts, onnx.templates, onnx.name, source)
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
    # backbone None: build_video_model tells a named backbone (or a custom size) from the CLIP itself
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
# The Python API
# --------------------------------------------------------------------------------------------------


class Predictor:
    """A video model ready for inference: classify video files, or embed them.

    ``Predictor.from_checkpoint(path)`` (an mbgf checkpoint, a run folder, or any file ``mbgf convert``
    reads) or ``Predictor.from_pretrained("ViT-B/16")`` (zero-shot CLIP). ``predict(videos, classes)``:
    videos are paths of files, folders or list files; classes are names (free text) or None for the
    checkpoint's. ``mbgf eval`` runs its loader through :meth:`scores`; ``mbgf embed`` its shards through
    :meth:`embed_batches`.
    """

    def __init__(self, loaded: LoadedModel, device: str | torch.device | None = None, amp: str = "auto",
                 compile: bool = False):
        from mbgf_cli.precision import choose_amp
        from mbgf_cli.resources import resolve_device

        self.loaded = loaded
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = loaded.model.to(self.device).eval()
        dtype, self.precision = choose_amp(amp, self.device, self.model.config.model)  # precision: why, in words
        self.autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else None
        self.compiled = compile
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

    def classes(self, classes: str | Sequence[str] | None = None, labels_file=None) -> list[str]:
        """The classes to score against: free text, a labels file's, else the checkpoint's."""
        return resolve_classes(classes, labels_file, self.class_names, self.name)

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

    def check_views(self, views: tuple[int, int], batch_size: int, text: str | None = None) -> None:
        """The ``--views`` memory bound (:mod:`mbgf_cli.heuristics`), before any decoding."""
        from mbgf_cli.heuristics import check_views_memory

        check_views_memory(views, batch_size, self.config.frames, self.config.input_size, text)

    # ---- work

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

    def scores(self, views: torch.Tensor, tokens: torch.Tensor, explain: bool = False) -> ViewScores:
        """Class scores of a batch of views already on the device (eval's multi-view rule)."""
        return score_views(self.model, views, tokens, self.autocast, explain)

    def video_vectors(self, views: torch.Tensor) -> torch.Tensor:
        """Unit-norm video embeddings ``[B, E]`` of a batch of views already on the device."""
        return embed_views(self.model, views, self.autocast)

    def embed_batches(self, dataset: VideoFiles, batches: list[list[int]], workers: int | None = None, bar=None,
                      description: str = "embed") -> Iterator:
        """Yield ``(indices, unit-norm vectors [B', E] on the CPU, [(index, reason), ...])`` per batch."""
        width = self.model.clip_config.embed_dim
        for views, indices, failures in self.stream(dataset, batches, workers, bar, description):
            vectors = self.video_vectors(views).cpu() if views is not None else torch.zeros(0, width)
            yield indices, vectors, failures

    def predict(self, videos, classes: str | Sequence[str] | None = None, views: tuple[int, int] = (1, 1),
                batch_size: int = 8, workers: int | None = None, decoder: str = "auto", strict: bool = False,
                explain: bool = False, labels_file=None, bar=None) -> Predictions:
        """Classify ``videos`` (paths of files, folders, list files) against ``classes`` (names, a
        comma-separated string, or None: ``labels_file``'s, else the checkpoint's)."""
        inputs = as_inputs(videos, strict)
        names = self.classes(classes, labels_file)
        if explain:
            require_gates(self.model)
        self.check_views(views, batch_size)
        tokens = self.class_tokens(names)
        dataset = self.files(inputs.videos, views, decoder, strict)
        rows: dict[int, ViewScores] = {}
        failed = {}
        for batch, indices, failures in self.stream(dataset, chunks(range(len(inputs)), batch_size), workers, bar,
                                                    "predict"):
            failed.update(failures)
            if batch is None:
                continue
            scores = self.scores(batch, tokens, explain)
            for row, index in enumerate(indices):
                rows[index] = ViewScores(scores.probs[row].cpu(), scores.logits[row].cpu(),
                                         None if scores.gates is None else scores.gates[row].cpu())
        return Predictions.gather(inputs, names, rows, failed, explain)

    def timeline(self, video, classes: str | Sequence[str] | None = None, window: float = 2.0, stride: float = 1.0,
                 top_k: int = 5, crops: int = 1, batch_size: int = 8, labels_file=None, bar=None, stats=None):
        """Class probabilities per ``window`` seconds of one video file, every ``stride`` seconds: a
        :class:`~mbgf_cli.inference.timeline.VideoTimeline` (``.to_json()``: ``{"video", "windows":
        [{"start", "end", "top": [{"id", "label", "probability"}]}]}``). ``stats``: a ``DecodeStats`` to
        count into. An unreadable video is an ``UnreadableVideo`` (a ``UserError``) naming it."""
        from mbgf_cli.inference import timeline

        timeline.check_timeline(window, stride, top_k, batch_size, crops)
        names = self.classes(classes, labels_file)
        return timeline.video_timeline(self, video, names, self.class_tokens(names), window, stride, top_k, crops,
                                       batch_size, stats, bar)

    def embed_windows(self, video, window: float = 2.0, stride: float = 1.0, crops: int = 1, batch_size: int = 8,
                      bar=None, stats=None) -> tuple[list[tuple[float, float]], torch.Tensor]:
        """``(spans, vectors [W, E])``: a unit-norm embedding per ``window`` seconds of one video file, every
        ``stride`` seconds, with each window's ``(start, end)`` in seconds (``mbgf embed --timeline``)."""
        from mbgf_cli.inference import timeline

        timeline.check_timeline(window, stride, 1, batch_size, crops)
        return timeline.video_rows(self, video, window, stride, self.video_vectors, crops, batch_size, stats, bar)

    def embed(self, videos, views: tuple[int, int] = (1, 1), batch_size: int = 8, workers: int | None = None,
              decoder: str = "auto", strict: bool = False, bar=None) -> VideoEmbeddings:
        """Unit-norm video embeddings of ``videos`` (files, folders, list files), in order."""
        inputs = as_inputs(videos, strict)
        self.check_views(views, batch_size)
        dataset = self.files(inputs.videos, views, decoder, strict)
        vectors, failed = {}, {}
        for indices, rows, failures in self.embed_batches(dataset, chunks(range(len(inputs)), batch_size), workers,
                                                          bar):
            failed.update(failures)
            vectors.update(zip(indices, rows, strict=True))
        order = sorted(vectors)
        width = self.model.clip_config.embed_dim
        return VideoEmbeddings([inputs.videos[i] for i in order],
                               torch.stack([vectors[i] for i in order]) if order else torch.zeros(0, width),
                               [(inputs.videos[i], failed[i]) for i in sorted(failed)])


def as_inputs(videos, strict: bool) -> VideoInputs:
    """``videos`` as collected inputs (already collected ones are kept as they are)."""
    if isinstance(videos, VideoInputs):
        return videos
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    return collect_videos(videos, strict)


# --------------------------------------------------------------------------------------------------
# `mbgf predict`
# --------------------------------------------------------------------------------------------------


def predict(cfg) -> tuple[Predictions, dict]:
    """Run ``mbgf predict`` (``cfg``: a ``PredictConfig``): every check that a user can fail happens
    before the first video is decoded, the output file's included."""
    from mbgf_cli.console import progress
    from mbgf_cli.inference.inputs import parse_views
    from mbgf_cli.outputs import check_output_file

    cfg.check_timeline_options("plot")
    views = parse_views(cfg.views or "1x1")
    source = ModelSource.of(cfg)
    if cfg.csv:
        check_output_file(cfg.csv, "--csv")
    inputs = collect_videos(cfg.inputs, cfg.strict)
    predictor = Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    with progress(transient=True) as bar:
        result = predictor.predict(inputs, cfg.classes, views, cfg.batch_size, cfg.workers, cfg.decoder, cfg.strict,
                                   cfg.explain, labels_file=cfg.labels, bar=bar)
    check_some_read(len(inputs), result.skipped)
    if cfg.csv:
        from mbgf_cli.fileio import atomic_write_text

        Path(cfg.csv).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg.csv, result.csv_text(cfg.top_k))
    return result, {"model": predictor.name, "views": f"{views[0]}x{views[1]}"}


def predict_timeline(cfg):
    """Run ``mbgf predict --timeline`` (``cfg``: a ``PredictConfig``): every check first, then each video
    decoded once; returns ``(Timelines, info)``."""
    from mbgf_cli.console import progress
    from mbgf_cli.inference import timeline
    from mbgf_cli.inference.inputs import parse_views

    window, stride = timeline.window_and_stride(cfg)
    crops = timeline.check_timeline_views(parse_views(cfg.views or "1x1"))
    timeline.check_timeline_decoder(cfg.decoder)
    if cfg.explain:
        raise UserError("--explain is per video; it does not go with --timeline")
    timeline.check_outputs(cfg.csv, cfg.plot)
    source = ModelSource.of(cfg)
    inputs = collect_videos(cfg.inputs, cfg.strict)
    predictor = Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    names = predictor.classes(cfg.classes, cfg.labels)
    tokens = predictor.class_tokens(names)
    result = timeline.Timelines([])
    with progress(transient=True) as bar:
        for video in inputs.videos:
            try:
                result.videos.append(timeline.video_timeline(predictor, video, names, tokens, window, stride,
                                                             cfg.top_k, crops, cfg.batch_size, bar=bar))
            except timeline.UnreadableVideo as e:
                if cfg.strict:
                    raise UserError(f"{e} (without --strict it is skipped)") from None
                result.skipped.append((video, e.reason))
    check_some_read(len(inputs), result.skipped)
    timeline.write_outputs(result, cfg.csv, cfg.plot, cfg.top_k)
    return result, {"model": predictor.name, "window": window, "stride": stride, "crops": crops}


def check_some_read(total: int, skipped: Sequence[tuple[str, str]]) -> None:
    """Every input unreadable is a failure (exit non-zero), not an empty result."""
    if total and len(skipped) >= total:
        video, reason = skipped[0]
        raise UserError(f"none of the {total} video(s) could be read (first: {video}: {reason})")
