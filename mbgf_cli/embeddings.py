"""Embeddings files: ``mbgf embed`` writes them, ``mbgf search`` ranks them.

An embeddings file is safetensors:
  video  float32 [N, E]  unit-norm video embeddings (``mbgf_cli.inference.embed_views``), in the order
                         of the metadata's ``videos``
  text   float32 [M, E]  unit-norm text embeddings of ``texts`` (``--texts`` / ``--labels``), each text
                         through the model's prompt templates as a class name would be
  probe  float32 [1, E]  the text embedding of ``PROBE_TEXT``: search rebuilds the text encoder from the
                         recorded model and checks that it gives this vector back
Its metadata is one key, ``mbgf``, holding a JSON object: format, version, videos, skipped
([video, reason] pairs), texts, model (the ``ModelSource``: checkpoint path or pretrained name,
absolute), model_name, config, prompts and templates (how text is encoded), views, decoder, identity
(what the file was made from) and its digest. One key, because safetensors writes metadata keys in no
fixed order and a rerun must give the identical file.

Large inputs are written in shards: ``FILE.parts/run.json`` (the identity) and
``FILE.parts/shard-NNNNN.safetensors`` (``--shard-size`` videos each, each written atomically, each
computed in batches that stay inside it, so a shard's numbers do not depend on which run computed it).
A rerun with the same identity keeps the finished shards and computes the others; when all are there
they are merged into FILE (atomically) and the parts folder is removed. A finished FILE is only
replaced when it was made from the same identity (then there is nothing to do) or with ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mbgf_cli.console import console, err_console, progress
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import atomic_output, atomic_write_json
from mbgf_cli.inference.configs import EmbedConfig, SearchConfig
from mbgf_cli.inference.inputs import collect_videos, parse_classes, parse_views, read_class_names
from mbgf_cli.inference.predictor import ModelSource, Predictor, check_some_read, load_model
from mbgf_cli.inference.results import print_skipped
from mbgf_cli.inference.runtime import chunks
from mbgf_cli.outputs import check_output_file

FORMAT = "mbgf-embeddings"
VERSION = 1
META_KEY = "mbgf"
PROBE_TEXT = "a video"
RUN_FILE = "run.json"


def parts_dir(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".parts")


def shard_file(parts: Path, shard: int) -> Path:
    return parts / f"shard-{shard:05d}.safetensors"


def digest_of(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# What each identity field means, for a refusal that says what differs.
IDENTITY_WORDS = {"videos": "other videos", "files": "other videos", "model": "another model (or it changed since)",
                  "views": "other views", "decoder": "another decoder", "prompts": "other prompts",
                  "texts": "other texts", "timeline": "other windows"}


def what_differs(recorded: dict | None, identity: dict) -> str:
    recorded = recorded or {}
    words = [IDENTITY_WORDS[key] for key in IDENTITY_WORDS if recorded.get(key) != identity.get(key)]
    return ", ".join(dict.fromkeys(words)) or "another mbgf version"


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    with atomic_output(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(meta, tensors)`` of one of our safetensors files; UserError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - safetensors has its own error types for a damaged file
        raise UserError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    try:
        meta = json.loads(header[META_KEY])
    except (KeyError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith(FORMAT):
        raise UserError(f"{path}: not an mbgf embeddings file (made by `mbgf embed`)")
    return meta, tensors


# --------------------------------------------------------------------------------------------------
# `mbgf embed`
# --------------------------------------------------------------------------------------------------


@dataclass
class EmbedSummary:
    output: str
    videos: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    texts: int = 0
    shards: int = 0
    resumed: int = 0  # shards found finished by an earlier run
    up_to_date: bool = False
    model: str = ""
    windows: int | None = None  # --timeline: the rows, one per window

    def to_json(self) -> dict:
        summary = {"output": self.output, "videos": self.videos, "skipped": [v for v, _ in self.skipped],
                   "texts": self.texts, "shards": self.shards, "resumed_shards": self.resumed,
                   "up_to_date": self.up_to_date, "model": self.model}
        return summary if self.windows is None else {**summary, "windows": self.windows}


def content_stamps(videos: list[str]) -> list:
    """What a video's content is known by without reading it: ``[bytes, mtime_ns]`` (None: absent). A
    file changed since a shard or the output was made makes them stale, so a rerun equals a fresh run."""
    stamps = []
    for video in videos:
        try:
            stat = os.stat(video)
            stamps.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamps.append(None)
    return stamps


@dataclass
class EmbedPlan:
    """What ``mbgf embed`` is to make: the inputs, texts and identity (what refuses another run's
    output), and the videos' content stamps (what makes a finished shard or output stale)."""

    output: Path
    views: tuple[int, int]
    source: ModelSource
    inputs: object
    texts: list[str]
    identity: dict
    digest: str
    stamps: list
    timeline: tuple[float, float] | None = None  # --timeline: (window, stride) in seconds

    def content(self, indices=None) -> str:
        chosen = self.stamps if indices is None else [self.stamps[i] for i in indices]
        return digest_of({"digest": self.digest, "stamps": chosen})


def plan_embedding(cfg: EmbedConfig) -> EmbedPlan:
    """Every check a user can fail, before the model loads: views, the output file, inputs, texts."""
    cfg.check_timeline_options()
    views = parse_views(cfg.views or "1x1")
    spacing = None
    if cfg.timeline:
        from mbgf_cli.inference import timeline

        spacing = timeline.window_and_stride(cfg)
        timeline.check_timeline_views(views)
        timeline.check_timeline_decoder(cfg.decoder)
    output = check_output_file(cfg.output, "--output")
    source = ModelSource.of(cfg)
    inputs = collect_videos(cfg.inputs, cfg.strict)
    texts = []
    if cfg.texts is not None:
        texts += parse_classes(cfg.texts, "--texts")
    if cfg.labels is not None:
        texts += [name for name in read_class_names(cfg.labels) if name not in texts]
    identity = {"videos": inputs.videos, "files": [os.path.abspath(v) for v in inputs.videos],
                "model": source.fingerprint(), "views": f"{views[0]}x{views[1]}", "decoder": cfg.decoder,
                "prompts": cfg.prompts, "texts": texts}
    if spacing is not None:  # another window or stride is another file
        identity["timeline"] = {"window": spacing[0], "stride": spacing[1]}
    return EmbedPlan(output, views, source, inputs, texts, identity, digest_of(identity),
                     content_stamps(inputs.videos), spacing)


def finished_output(plan: EmbedPlan, cfg: EmbedConfig) -> EmbedSummary | None:
    """The summary of an OUTPUT already made from these inputs, unchanged, and this model; None when it
    is to be (re)made. Another run's OUTPUT is refused without ``--overwrite``."""
    output = plan.output
    if not output.exists() or cfg.overwrite:
        return None
    try:
        meta, _ = _read(output)
    except UserError:
        meta = None
    if meta is None:
        raise UserError(f"{output}: exists and is not an mbgf embeddings file; --overwrite replaces it")
    if meta.get("digest") != plan.digest:
        raise UserError(f"{output}: holds embeddings of {what_differs(meta.get('identity'), plan.identity)}; "
                        "--overwrite replaces it")
    if meta.get("content") != plan.content():
        return None  # a video changed since: made again, as a fresh run would
    windows = meta.get("windows")
    return EmbedSummary(str(output), len(dict.fromkeys(meta["videos"])), [tuple(s) for s in meta["skipped"]],
                        len(meta["texts"]), up_to_date=True, model=meta.get("model_name", ""),
                        windows=None if windows is None else len(windows))


def open_parts(plan: EmbedPlan, cfg: EmbedConfig) -> tuple[Path, int]:
    """The parts folder of an unfinished run of this identity (resumed, at its shard size), or a new one."""
    parts = parts_dir(plan.output)
    shard_size = cfg.shard_size
    if parts.exists():
        try:
            run = json.loads((parts / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run = {}
        if run.get("digest") == plan.digest and not cfg.overwrite:
            if run.get("shard_size") != shard_size:
                err_console.print(f"resuming {parts} with the shard size it was started with, {run['shard_size']}",
                                  highlight=False)
                shard_size = int(run["shard_size"])
        elif not cfg.overwrite:
            raise UserError(f"{parts}: an unfinished embedding of {what_differs(run.get('identity'), plan.identity)}; "
                            "rerun its own command to finish it, or --overwrite to start over")
        else:
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write_json(parts / RUN_FILE, {"format": f"{FORMAT}-parts", "digest": plan.digest, "shard_size": shard_size,
                                         "identity": plan.identity})
    for stale in parts.glob(".*.tmp-*"):  # temporaries of writes that were interrupted
        stale.unlink(missing_ok=True)
    return parts, shard_size


def embed(cfg: EmbedConfig) -> EmbedSummary:
    """Run ``mbgf embed``: check everything a user can get wrong, then embed shard by shard and merge."""
    plan = plan_embedding(cfg)
    finished = finished_output(plan, cfg)
    if finished is not None:
        return finished
    if plan.timeline is not None:
        return embed_timeline(plan, cfg)
    predictor, texts = load_predictor(plan, cfg)
    parts, shard_size = open_parts(plan, cfg)
    predictor.check_views(plan.views, cfg.batch_size, cfg.views)
    total = len(plan.inputs)
    shards = [range(k * shard_size, min(total, (k + 1) * shard_size)) for k in range(math.ceil(total / shard_size))]
    done = {k for k, indices in enumerate(shards)
            if _shard_done(shard_file(parts, k), plan.digest, k, plan.content(indices))}
    compute_shards(predictor, plan, cfg, parts, shards, done)
    return merge_shards(predictor, texts, plan, cfg, parts, len(shards), len(done))


def load_predictor(plan: EmbedPlan, cfg: EmbedConfig) -> tuple[Predictor, dict[str, torch.Tensor]]:
    """The model, and what the output needs of it beside the videos, made before any video is decoded:
    the probe text's and the texts' embeddings (an ONNX file exported without --free-text has no text
    encoder, which is then said at once)."""
    predictor = Predictor.from_source(plan.source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    try:
        texts = {"probe": predictor.encode_texts([PROBE_TEXT])}
        if plan.texts:
            texts["text"] = predictor.encode_texts(plan.texts)
    except UserError as e:
        raise UserError(f"mbgf embed stores text embeddings with the videos (for mbgf search): {e}") from None
    return predictor, texts


def compute_shards(predictor: Predictor, plan: EmbedPlan, cfg: EmbedConfig, parts: Path, shards: list[range],
                   done: set[int]) -> None:
    """The shards not ``done``, each written as soon as its last batch is embedded."""
    batches, batch_shard = [], []
    for k, indices in enumerate(shards):
        if k not in done:
            for batch in chunks(indices, cfg.batch_size):
                batches.append(batch)
                batch_shard.append(k)
    remaining = {k: batch_shard.count(k) for k in set(batch_shard)}
    dataset = predictor.files(plan.inputs.videos, plan.views, cfg.decoder, cfg.strict)
    vectors, failed, written = {}, {}, 0
    try:
        with progress(transient=True) as bar:
            embedded = predictor.embed_batches(dataset, batches, cfg.workers, bar)
            for (indices, rows, failures), k in zip(embedded, batch_shard, strict=True):
                failed.update(failures)
                vectors.update(zip(indices, rows, strict=True))
                remaining[k] -= 1
                if remaining[k] == 0:
                    _write_shard(parts, k, plan, shards[k], vectors, failed, predictor.model.clip_config.embed_dim)
                    written += 1
                    if cfg.stop_after_shards is not None and written >= cfg.stop_after_shards:
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        err_console.print(f"{len(done) + written} of {len(shards)} shards are done in {parts}; the same command "
                          "resumes from there", highlight=False)
        raise


def merge_shards(predictor: Predictor, texts: dict[str, torch.Tensor], plan: EmbedPlan, cfg: EmbedConfig,
                 parts: Path, shards: int, resumed: int) -> EmbedSummary:
    """The shards as one OUTPUT (atomically); the parts folder is removed."""
    videos, rows, skipped = [], [], []
    for k in range(shards):
        meta, tensors = _read(shard_file(parts, k))
        videos += meta["videos"]
        skipped += [tuple(s) for s in meta["skipped"]]
        rows.append(tensors["video"])
    if plan.inputs.videos and not videos:
        shutil.rmtree(parts)
        check_some_read(len(plan.inputs), skipped)
    write_output(predictor, plan, cfg, texts, videos, rows, skipped)
    shutil.rmtree(parts)
    return EmbedSummary(str(plan.output), len(videos), skipped, len(plan.texts), shards, resumed,
                        model=predictor.name)


def write_output(predictor: Predictor, plan: EmbedPlan, cfg: EmbedConfig, texts: dict[str, torch.Tensor],
                 videos: list[str], rows: list[torch.Tensor], skipped: list, windows: list | None = None) -> None:
    """OUTPUT (atomically): the video rows, the texts' and the probe's embeddings (``texts``, from
    ``load_predictor``), and the metadata (``windows``: a --timeline file's ``[start, end]`` of each row)."""
    width = predictor.model.clip_config.embed_dim
    tensors = {"video": torch.cat(rows) if rows else torch.zeros(0, width), **texts}
    loaded = predictor.loaded
    meta = {"format": FORMAT, "version": VERSION, "videos": videos, "skipped": [list(s) for s in skipped],
            "texts": plan.texts, "model": plan.source.absolute().to_dict(), "model_name": loaded.name,
            "config": predictor.config.to_dict(), "prompts": loaded.prompts, "templates": loaded.templates,
            "views": plan.identity["views"], "decoder": cfg.decoder, "identity": plan.identity,
            "digest": plan.digest, "content": plan.content()}
    if windows is not None:
        meta["windows"] = windows
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    _save(plan.output, tensors, meta)


def embed_timeline(plan: EmbedPlan, cfg: EmbedConfig) -> EmbedSummary:
    """``mbgf embed --timeline``: a row per window of every video (``Predictor.embed_windows``), each video
    decoded once, front to back; one OUTPUT, no shards."""
    from mbgf_cli.inference.timeline import UnreadableVideo

    predictor, texts = load_predictor(plan, cfg)
    window, stride = plan.timeline
    videos, windows, rows, skipped = [], [], [], []
    with progress(transient=True) as bar:
        for video in plan.inputs.videos:
            try:
                spans, vectors = predictor.embed_windows(video, window, stride, plan.views[1], cfg.batch_size, bar)
            except UnreadableVideo as e:
                if cfg.strict:
                    raise UserError(f"{e} (without --strict it is skipped)") from None
                skipped.append((video, e.reason))
                continue
            videos += [video] * len(spans)
            windows += [[round(start, 6), round(end, 6)] for start, end in spans]
            rows.append(vectors.cpu())
    check_some_read(len(plan.inputs), skipped)
    write_output(predictor, plan, cfg, texts, videos, rows, skipped, windows)
    return EmbedSummary(str(plan.output), len(plan.inputs) - len(skipped), skipped, len(plan.texts), 1,
                        model=predictor.name, windows=len(windows))


def _shard_done(path: Path, digest: str, shard: int, content: str) -> bool:
    if not path.is_file():
        return False
    try:
        meta, tensors = _read(path)
    except UserError:
        return False  # damaged: computed again
    return meta.get("digest") == digest and meta.get("shard") == shard and meta.get("content") == content \
        and "video" in tensors


def _write_shard(parts: Path, shard: int, plan: EmbedPlan, indices: range, vectors: dict, failed: dict,
                 width: int) -> None:
    videos = plan.inputs.videos
    read = [i for i in indices if i in vectors]
    meta = {"format": f"{FORMAT}-shard", "digest": plan.digest, "shard": shard, "content": plan.content(indices),
            "videos": [videos[i] for i in read], "skipped": [[videos[i], failed[i]] for i in indices if i in failed]}
    rows = torch.stack([vectors.pop(i) for i in read]) if read else torch.zeros(0, width)
    _save(shard_file(parts, shard), {"video": rows}, meta)


def print_embed_summary(summary: EmbedSummary, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(summary.to_json()))
        return
    if summary.up_to_date:
        console.print(f"{summary.output} is up to date: {summary.videos} videos, made from these inputs and this "
                      "model (--overwrite computes it again)", highlight=False)
        return
    resumed = f"; {summary.resumed} of {summary.shards} shards were already done" if summary.resumed else ""
    texts = f" and {summary.texts} texts" if summary.texts else ""
    texts = f" ({summary.windows} windows){texts}" if summary.windows is not None else texts
    console.print(f"{summary.videos} videos{texts} embedded into {summary.output} ({summary.model}){resumed}",
                  highlight=False)
    print_skipped(summary.skipped)


# --------------------------------------------------------------------------------------------------
# Reading, and `mbgf search`
# --------------------------------------------------------------------------------------------------


@dataclass
class Embeddings:
    path: Path
    meta: dict
    videos: list[str]
    vectors: torch.Tensor                 # [N, E]
    texts: list[str]
    text_vectors: torch.Tensor | None     # [M, E]
    probe: torch.Tensor                   # [1, E]
    windows: list | None = None           # --timeline files: [start, end] seconds of each row

    @property
    def source(self) -> ModelSource:
        return ModelSource.from_dict(self.meta["model"])


def read_embeddings(path) -> Embeddings:
    """An embeddings file written by ``mbgf embed``."""
    path = Path(path)
    meta, tensors = _read(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: a part of an unfinished `mbgf embed`, not its result")
    if meta.get("version") != VERSION:
        raise UserError(f"{path}: embeddings file version {meta.get('version')}; this mbgf reads version {VERSION}")
    return Embeddings(path, meta, list(meta["videos"]), tensors["video"], list(meta.get("texts") or []),
                      tensors.get("text"), tensors["probe"], meta.get("windows"))


@dataclass
class SearchResult:
    embeddings: str
    query: str | None
    like: str | None
    results: list[tuple[str, float]]  # (video, cosine similarity), best first
    windows: list | None = None       # a --timeline file's: [start, end] seconds of each result

    def to_json(self) -> dict:
        results = [{"rank": rank, "video": video, "similarity": round(score, 6)}
                   for rank, (video, score) in enumerate(self.results, start=1)]
        for row, (start, end) in zip(results, self.windows or [], strict=False):
            row.update(start=start, end=end)
        return {"embeddings": self.embeddings, "query": self.query, "like": self.like, "results": results}


def search(cfg: SearchConfig) -> SearchResult:
    """Rank the videos of an embeddings file by cosine similarity to a text (through the model the file
    records) or to a video (one of the file's, which is then left out of the ranking, or a new file
    embedded on the fly)."""
    if (cfg.query is None) == (cfg.like is None):
        raise UserError("give a query text, or --like VIDEO (one of them)")
    if cfg.query is not None and not cfg.query.strip():
        raise UserError("the query text is empty")
    found = read_embeddings(cfg.embeddings)
    if not len(found.videos):
        raise UserError(f"{cfg.embeddings}: holds no video embeddings (every video was skipped)")
    exclude = None
    if cfg.like is not None:
        # A --timeline file ranks windows: a video is ranked against all of them, its own included.
        exclude = _stored_index(found, cfg.like) if found.windows is None else None
        if exclude is not None:
            query = found.vectors[exclude]
        elif Path(cfg.like).is_file():
            predictor = _recorded_predictor(found, cfg, for_video=True)
            clips, crops = (int(v) for v in found.meta["views"].split("x"))
            embedded = predictor.embed([cfg.like], (clips, crops), workers=0, decoder=found.meta["decoder"],
                                       strict=True)
            query = embedded.vectors[0]
        else:
            raise UserError(f"--like {cfg.like}: neither one of the videos in {cfg.embeddings} nor a video file")
    else:
        predictor = _recorded_predictor(found, cfg, for_video=False)
        query = predictor.encode_texts([cfg.query.strip()])[0]
    scores = found.vectors.float() @ query.float()
    if exclude is not None:
        scores[exclude] = -math.inf
    k = min(cfg.top_k, len(found.videos) - (exclude is not None))
    values, indices = scores.topk(k) if k > 0 else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return SearchResult(str(cfg.embeddings), cfg.query, cfg.like,
                        [(found.videos[int(i)], float(v)) for v, i in zip(values, indices, strict=True)],
                        None if found.windows is None else [found.windows[int(i)] for i in indices])


def _stored_index(found: Embeddings, video: str) -> int | None:
    """The row of ``video`` in the file: the same path as stored, or the same file."""
    if video in found.videos:
        return found.videos.index(video)
    identity = found.meta.get("identity") or {}
    absolute = dict(zip(identity.get("videos", []), identity.get("files", []), strict=False))
    wanted = os.path.abspath(video)
    for i, stored in enumerate(found.videos):
        if absolute.get(stored) == wanted:
            return i
    return None


def _recorded_predictor(found: Embeddings, cfg: SearchConfig, for_video: bool) -> Predictor:
    """The model the file was made with (or ``--checkpoint``), its text encoding as recorded, checked."""
    source = found.source
    if cfg.checkpoint:
        source = dataclasses.replace(source, checkpoint=cfg.checkpoint, pretrained=None)
    where = source.checkpoint or source.pretrained
    if source.checkpoint and not Path(source.checkpoint).exists():
        raise UserError(f"{found.path} was made with {source.checkpoint}, which is not there any more; "
                        "give --checkpoint PATH (the same model)")
    loaded = load_model(source)
    loaded = dataclasses.replace(loaded, prompts=found.meta["prompts"], templates=found.meta["templates"])
    predictor = Predictor(loaded, cfg.device, cfg.amp)
    probe = predictor.encode_texts([PROBE_TEXT])[0]
    if float(probe @ found.probe[0].float()) < 0.99:
        raise UserError(f"{where}: not the model {found.path} was made with (its text embeddings differ); "
                        "give --checkpoint with that model")
    if for_video and predictor.config.to_dict() != found.meta["config"]:
        raise UserError(f"{where}: its video model is not the one {found.path} was made with; "
                        "give --checkpoint with that model")
    return predictor


def print_search(result: SearchResult, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    if as_json:
        console.print_json(json.dumps(result.to_json()))
        return
    what = f"{result.query!r}" if result.query is not None else f"like {result.like}"
    table = Table(title=escape(what), title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("video", overflow="fold")
    if result.windows is not None:
        table.add_column("start", justify="right")
        table.add_column("end", justify="right")
    table.add_column("similarity", justify="right")
    for rank, (video, score) in enumerate(result.results, start=1):
        where = [f"{t:.2f}" for t in result.windows[rank - 1]] if result.windows is not None else []
        table.add_row(str(rank), escape(video), *where, f"{score:.4f}")
    console.print(table)
