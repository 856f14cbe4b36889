"""Inference: the one path from video files to class scores and embeddings, shared by ``mbgf eval``,
``mbgf predict``, ``mbgf embed`` and ``mbgf search``.

    from mbgf_cli.inference import Predictor

    predictor = Predictor.from_checkpoint("runs/synthetic-tiny-clip-mbgf/best")
    result = predictor.predict(["my_videos/", "clip.mp4"])                       # the checkpoint's classes
    result = predictor.predict(["clip.mp4"], ["juggling balls", "riding a bike"])  # free text
    for video, top in zip(result.videos, result.top(3)):
        print(video, top[0].label, top[0].probability)
    vectors = predictor.embed(["my_videos/"]).vectors                             # [N, E], unit norm

The package:
  inputs     which videos (files, folders, list files) and which classes (the checkpoint's, a labels
             file, free text); ``--views``. No torch.
  predictor  ``ModelSource`` and ``load_model`` (an mbgf checkpoint or run folder, any file ``mbgf
             convert`` reads, or zero-shot CLIP), the forward pass over views (``score_views``: softmax
             per view, mean over views, eval's multi-view rule; ``embed_views``; ``text_embeddings``)
             and ``Predictor``, on which eval, predict, embed and search are built.
  runtime    the test views of video files (``VideoFiles``: eval's decoding, sampling, crops and
             normalisation over any files), batches decoded by loader processes in order, the model's
             CPU threads shared with them, the default number of decoding processes.
  results    ``Predictions``, ``VideoEmbeddings``; predict's table, CSV and JSON.
  timeline   scores or embeddings per window of a long video, each video decoded once front to back
             (``Predictor.timeline``, ``mbgf predict --timeline``, ``mbgf embed --timeline``).
  configs    the options of eval, predict, embed and search (light, for ``--help``).
The CPU rules of thumb (thread sharing, the --views memory bound) live in :mod:`mbgf_cli.heuristics`,
each with its switch.

Videos that cannot be read are skipped and listed with the reason (``strict`` stops at the first one);
a video is never replaced by another one here, unlike in training and in ``mbgf eval``'s lists.

Names are loaded on first use, so that ``mbgf --help`` (which reads ``configs``) does not load torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "inputs": ("VIDEO_EXTENSIONS", "VideoInputs", "collect_videos", "read_path_list", "parse_classes",
               "read_class_names", "resolve_classes", "parse_views"),
    "predictor": ("ModelSource", "LoadedModel", "load_model", "pretrained_model", "require_gates", "ViewScores",
                  "score_views", "embed_views", "text_embeddings", "Predictor", "checkpoint_folder", "predict",
                  "predict_timeline"),
    "runtime": ("sharing_cores", "default_workers", "FileSource", "VideoFiles", "collate_views", "iterate_batches",
                "chunks"),
    "results": ("Ranked", "top_classes", "Predictions", "VideoEmbeddings", "print_predictions"),
    "timeline": ("VideoTimeline", "Timelines", "UnreadableVideo"),
    "configs": ("TimelineOptions", "PredictConfig", "EmbedConfig", "SearchConfig", "EvalConfig"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
