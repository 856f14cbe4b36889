"""The options of the commands that run a model over videos (predict, embed, search, eval), each a
config dataclass composed from the shared groups of :mod:`mbgf_cli.settings`. Light (no torch): the
command line reads them to build ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

from mbgf_cli.errors import UserError
from mbgf_cli.settings import (
    ABOVE_0,
    AT_LEAST_1,
    DATA,
    MODEL,
    OUTPUT,
    RUN,
    TIMELINE,
    ClassOptions,
    LoadingOptions,
    ModelSourceOptions,
    RuntimeOptions,
    argument,
    flag,
    option,
)

DEFAULT_WINDOW, DEFAULT_STRIDE = 2.0, 1.0  # seconds: a timeline's windows when --window/--stride are not given

VIDEO_PATHS_HELP = "Video files, folders (searched recursively) or list files (.txt: a path a line, optionally a label)."

PREDICT_TIMELINE_HELP = ("Top classes per window of each video (JSON: windows: [{start, end, top}]; "
                         "CSV: video,start,end,rank,id,label,probability). Decodes each video once.")
EMBED_TIMELINE_HELP = ("An embedding per window of each video (with its start and end), so that mbgf search finds "
                       "the moment. Decodes each video once.")


@dataclass
class WindowOptions:
    """The windows of a long video's timeline (``mbgf_cli.inference.timeline``), in seconds."""

    window: float | None = option(None, "--window", panel=TIMELINE, range=ABOVE_0, none=f"{DEFAULT_WINDOW:g}",
                                  help="Timeline: window length in seconds.")
    stride: float | None = option(None, "--stride", panel=TIMELINE, range=ABOVE_0, none=f"{DEFAULT_STRIDE:g}",
                                  help="Timeline: seconds from one window's start to the next.")


@dataclass
class TimelineOptions(WindowOptions):
    """Scores or embeddings per window of a long video, for predict and embed. ``--window``/``--stride``
    default to ``None`` so that giving them without ``--timeline`` is refused."""

    timeline: bool = option(False, "--timeline", panel=TIMELINE,
                            help="Per window of each video (--window seconds every --stride). Decodes each video once.")

    def check_timeline_options(self, *others: str) -> None:
        """Without ``--timeline``, its options (``window``, ``stride`` and ``others``) are refused."""
        if self.timeline:
            return
        for name in ("window", "stride", *others):
            if getattr(self, name) is not None:
                raise UserError(f"{flag(self, name)} goes with --timeline")


@dataclass
class PredictConfig(ClassOptions, ModelSourceOptions, LoadingOptions, RuntimeOptions, TimelineOptions):
    inputs: list[str] = argument(..., metavar="PATH...", path=True, help=VIDEO_PATHS_HELP)
    top_k: int = option(5, "--top-k", "-k", panel=OUTPUT, range=AT_LEAST_1, help="Classes shown per video.")
    explain: bool = option(False, "--explain", panel=OUTPUT,
                           help="MBGF's gate weights (appearance, temporal, motion) per video.")
    csv: str | None = option(None, "--csv", panel=OUTPUT, path=True,
                             help="Also write video,rank,id,label,probability rows to this file.")
    as_json: bool = option(False, "--json", panel=OUTPUT,
                           help="Print one JSON object: {videos: [{video, top: [{id, label, probability}]}], "
                                "skipped: [...]}.")
    plot: str | None = option(None, "--plot", panel=TIMELINE, path=True,
                              help="--timeline: also draw class probability over time into this PNG.")


@dataclass
class EmbedConfig(ModelSourceOptions, LoadingOptions, RuntimeOptions, TimelineOptions):
    inputs: list[str] = argument(..., metavar="PATH...", path=True, help=VIDEO_PATHS_HELP)
    output: str = option(..., "--output", "-o", "--out", panel=OUTPUT, path=True,
                         help="The embeddings file to write (e.g. videos.safetensors).")
    texts: str | None = option(None, "--texts", panel=OUTPUT,
                               help='Also embed these texts, comma-separated: "juggling, riding a bike".')
    labels: str | None = option(None, "--labels", panel=OUTPUT, path=True,
                                help="Also embed the class names of this file (labels.csv or a name a line).")
    shard_size: int = option(1000, "--shard-size", panel=OUTPUT, range=AT_LEAST_1,
                             help="Videos per shard (OUTPUT.parts/): a rerun resumes from the finished ones.")
    overwrite: bool = option(False, "--overwrite", panel=OUTPUT,
                             help="Replace an OUTPUT made from other videos or another model.")
    as_json: bool = option(False, "--json", panel=OUTPUT, help="Print the summary as JSON.")
    # behave as if interrupted after writing this many shards (tests)
    stop_after_shards: int | None = option(None, "--stop-after-shards", hidden=True)


@dataclass
class SearchConfig(RuntimeOptions):
    embeddings: str = argument(..., metavar="EMBEDDINGS", path=True, help="A file written by `mbgf embed`.")
    query: str | None = argument(None, metavar="QUERY", help='What to look for, in words: "someone juggling".')
    like: str | None = option(None, "--like", path=True,
                              help="Rank by similarity to this video instead (one of the file's, or any video file, "
                                   "embedded with the file's model).")
    top_k: int = option(10, "--top-k", "-k", range=AT_LEAST_1, help="Videos shown.")
    checkpoint: str | None = option(None, "--checkpoint", "-c", path=True, panel=MODEL,
                                    help="The model the file was made with, if it has moved since (a run folder: "
                                         "its best/).")
    as_json: bool = option(False, "--json", help="Print the ranking as one JSON object.")


@dataclass
class EvalConfig(ModelSourceOptions, LoadingOptions, RuntimeOptions):
    zero_shot: bool = option(False, "--zero-shot", panel=MODEL, help="CLIP with no training (needs --pretrained).")
    dataset: str | None = option(None, "--dataset", "-d", panel=DATA,
                                 help="Preset (k400, ucf101, hmdb51, synthetic): labels and test views.")
    root: str | None = option(None, "--root", panel=DATA, path=True,
                              help="Dataset folder: videos/ (or videos.tar/.zip), val.txt, labels.csv.")
    list_file: str | None = option(None, "--val-list", "--list", panel=DATA,
                                   help="The list to evaluate (default ROOT/val.txt).")
    labels: str | None = option(None, "--labels", panel=DATA, path=True,
                                help="id,name CSV (default ROOT/labels.csv, else the preset's).")
    cache_decoded: bool = option(False, "--cache-decoded", panel=DATA, help="Decode every video once, up front.")
    splits: list[int] | None = option(
        None, "--splits", panel=RUN, range=AT_LEAST_1,
        help="Zero-shot over official splits, e.g. --splits 1 2 3: each split's test list (ROOT/splitN/val.txt, "
             "or {split} in --root/--val-list), then the mean and std.")
    per_class: bool = option(False, "--per-class", panel=OUTPUT, help="Top-1 of every class.")
    explain: bool = option(False, "--explain", panel=OUTPUT, help="MBGF: mean gate weight of each branch per class.")
    predictions: str | None = option(None, "--predictions", panel=OUTPUT, path=True,
                                     help="Write one CSV row per video.")
    plot: str | None = option(None, "--plot", panel=OUTPUT, path=True,
                              help="Write confusion_matrix.png and per_class_accuracy.png into this folder.")
    as_json: bool = option(False, "--json", panel=OUTPUT, help="Print the numbers as one JSON object.")
