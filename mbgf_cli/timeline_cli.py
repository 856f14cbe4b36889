"""``mbgf predict --timeline`` and ``mbgf embed --timeline``: the commands' side of timelines, over many
videos, on top of ``Predictor`` (``mbgf_cli.inference``) and the window engine (``mbgf_cli.timeline``).

An embeddings file made with ``--timeline`` is the ``mbgf embed`` format (``mbgf_cli.embeddings``) with
a row per window: ``video`` holds each window's unit-norm embedding, the metadata's ``videos`` the
video of each row and ``windows`` its ``[start, end]`` in seconds; ``identity`` records the window and
stride, so a rerun with other windows is refused as made from other inputs. ``mbgf search`` then
ranks windows and shows where each one is.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mbgf_cli import embeddings, timeline
from mbgf_cli.console import progress
from mbgf_cli.errors import UserError
from mbgf_cli.inference import (
    ModelSource,
    Predictor,
    collect_videos,
    embed_views,
    parse_classes,
    parse_views,
    read_class_names,
    resolve_classes,
)


def window_and_stride(cfg) -> tuple[float, float]:
    window = timeline.DEFAULT_WINDOW if cfg.window is None else cfg.window
    stride = timeline.DEFAULT_STRIDE if cfg.stride is None else cfg.stride
    timeline.check_window(window, stride)
    return window, stride


def predict(cfg) -> tuple[timeline.Timelines, dict]:
    """``mbgf predict --timeline`` from a ``PredictConfig``: every check first, then each video."""
    window, stride = window_and_stride(cfg)
    timeline.check_timeline(window, stride, cfg.top_k, cfg.batch_size)
    crops = timeline.check_timeline_views(parse_views(cfg.views))
    timeline.check_timeline_decoder(cfg.decoder)
    if cfg.explain:
        raise UserError("--explain is per video; it does not go with --timeline")
    timeline.check_outputs(cfg.csv, cfg.plot)
    source = ModelSource(cfg.checkpoint, cfg.pretrained, cfg.model, cfg.frames, cfg.input_size)
    inputs = collect_videos(cfg.inputs, cfg.strict)
    predictor = Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)
    names = resolve_classes(cfg.classes, cfg.labels, predictor.class_names, predictor.name)
    result = timeline.Timelines([])
    with progress(transient=True) as bar:
        for video in inputs.videos:
            try:
                result.videos.append(predictor.timeline(video, names, window, stride, cfg.top_k, crops,
                                                        cfg.batch_size, bar=bar))
            except timeline.UnreadableVideo as e:
                if cfg.strict:
                    raise UserError(f"{e} (without --strict it is skipped)") from None
                result.skipped.append((video, e.reason))
    timeline.write_outputs(result, cfg.csv, cfg.plot, cfg.top_k)
    return result, {"model": predictor.name, "window": window, "stride": stride, "crops": crops}


# --------------------------------------------------------------------------------------------------
# `mbgf embed --timeline`
# --------------------------------------------------------------------------------------------------


def embed(cfg) -> embeddings.EmbedSummary:
    """``mbgf embed --timeline`` from an ``EmbedConfig``: an embedding per window of every video."""
    window, stride = window_and_stride(cfg)
    crops = timeline.check_timeline_views(parse_views(cfg.views))
    timeline.check_timeline_decoder(cfg.decoder)
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {cfg.batch_size}")
    output = Path(cfg.output)
    from mbgf_cli.outputs import check_output_file

    check_output_file(output, "--output")
    source = ModelSource(cfg.checkpoint, cfg.pretrained, cfg.model, cfg.frames, cfg.input_size)
    inputs = collect_videos(cfg.inputs, cfg.strict)
    texts = parse_classes(cfg.texts, "--texts") if cfg.texts is not None else []
    if cfg.labels is not None:
        texts += [name for name in read_class_names(cfg.labels) if name not in texts]
    identity = {"videos": inputs.videos, "files": [os.path.abspath(v) for v in inputs.videos],
                "model": source.fingerprint(), "views": f"1x{crops}", "decoder": cfg.decoder,
                "prompts": cfg.prompts, "texts": texts, "timeline": {"window": window, "stride": stride}}
    digest = embeddings.digest_of(identity)
    if output.exists():
        finished = _finished(output, digest, identity, cfg.overwrite)
        if finished is not None:
            return finished

    predictor = Predictor.from_source(source, cfg.prompts, cfg.device, cfg.amp, compile=cfg.compile)

    def vectors_of(views):
        return embed_views(predictor.model, views, predictor.autocast)

    videos, spans, rows, skipped = [], [], [], []
    with progress(transient=True) as bar:
        for video in inputs.videos:
            try:
                found, vectors = _video_rows(predictor, video, window, stride, vectors_of, crops, cfg.batch_size, bar)
            except timeline.UnreadableVideo as e:
                if cfg.strict:
                    raise UserError(f"{e} (without --strict it is skipped)") from None
                skipped.append((video, e.reason))
                continue
            videos += [video] * len(found)
            spans += [[round(start, 6), round(end, 6)] for start, end in found]
            rows.append(vectors)
    width = predictor.model.clip_config.embed_dim
    tensors = {"video": torch.cat(rows) if rows else torch.zeros(0, width),
               "probe": predictor.encode_texts([embeddings.PROBE_TEXT])}
    if texts:
        tensors["text"] = predictor.encode_texts(texts)
    loaded = predictor.loaded
    meta = {"format": embeddings.FORMAT, "version": embeddings.VERSION, "videos": videos, "windows": spans,
            "skipped": [list(s) for s in skipped], "texts": texts, "model": source.absolute().to_dict(),
            "model_name": loaded.name, "config": predictor.config.to_dict(), "prompts": loaded.prompts,
            "templates": loaded.templates, "views": identity["views"], "decoder": cfg.decoder, "identity": identity,
            "digest": digest}
    output.parent.mkdir(parents=True, exist_ok=True)
    embeddings._save(output, tensors, meta)
    return embeddings.EmbedSummary(str(output), len(inputs.videos) - len(skipped), skipped, len(texts), 1,
                                   model=loaded.name, windows=len(spans))


def _video_rows(predictor, video, window, stride, vectors_of, crops, batch_size, bar):
    from mbgf_cli.data.readers import VideoError

    if not Path(video).is_file():
        raise timeline.UnreadableVideo(video, "missing")
    try:
        return timeline.window_rows(predictor, video, window, stride, vectors_of, crops, batch_size, bar=bar)
    except VideoError as e:
        raise timeline.UnreadableVideo(video, str(e)) from None


def _finished(output: Path, digest: str, identity: dict, overwrite: bool) -> embeddings.EmbedSummary | None:
    """A finished OUTPUT made from the same identity (nothing to do), else None to compute it;
    an OUTPUT of other inputs is refused unless ``overwrite``."""
    try:
        meta, _ = embeddings._read(output)
    except UserError:
        meta = None
    if overwrite:
        return None
    if meta is None:
        raise UserError(f"{output}: exists and is not an mbgf embeddings file; --overwrite replaces it")
    if meta.get("digest") != digest:
        recorded = meta.get("identity") or {}
        differs = "other windows" if (recorded.get("timeline") != identity["timeline"] and
                                      embeddings.what_differs(recorded, identity) == "another mbgf version") \
            else embeddings.what_differs(recorded, identity)
        raise UserError(f"{output}: holds embeddings of {differs}; --overwrite replaces it")
    return embeddings.EmbedSummary(str(output), len(dict.fromkeys(meta["videos"])), [tuple(s) for s in meta["skipped"]],
                                   len(meta["texts"]), up_to_date=True, model=meta.get("model_name", ""),
                                   windows=len(meta.get("windows") or []))
