"""Evaluation: multi-view testing, gathered over processes, and the numbers of the papers' tables.

A video's score is the softmax over classes of every view's logits, averaged over its views
(clips x crops; the argmax is that of the sum), computed by :func:`mbgf_cli.inference.score_views`,
the inference core that ``mbgf predict`` shares (with the model loading and the test views). Top-1,
top-5 and the mean of per-class top-1 are
taken over the videos that could be read; a video that failed to decode counts as skipped (reported,
never scored as another video's prediction). Under torchrun every process evaluates its share and
the rows are placed by dataset index, so padding repeats count once and nothing is dropped.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusion.config import BRANCHES
from mbgf_cli import checkpoint, distributed, inference
from mbgf_cli.console import console, err_console, progress
from mbgf_cli.errors import UserError
from mbgf_cli.inference.configs import EvalConfig
from mbgf_cli.outputs import check_output_file, check_output_folder, record_outputs

PLOTS_KIND = "eval-plots"  # the marker of a --plot folder (mbgf_cli/outputs.py)


@dataclass
class EvalResult:
    probs: torch.Tensor  # [N, K] mean softmax over views; zero rows for skipped videos
    labels: torch.Tensor  # [N]
    evaluated: torch.Tensor  # [N] bool: False for videos that could not be read
    gates: torch.Tensor | None = None  # [N, 3] MBGF gate weights (mean over views) with explain

    @property
    def videos(self) -> int:
        return int(self.evaluated.sum())

    @property
    def skipped(self) -> int:
        return int((~self.evaluated).sum())

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def _topk_correct(self, k: int) -> torch.Tensor:
        k = min(k, self.probs.shape[1])
        top = self.probs.topk(k, dim=1).indices
        return (top == self.labels[:, None]).any(dim=1)[self.evaluated]

    @property
    def top1(self) -> float:
        return float(self._topk_correct(1).float().mean()) if self.videos else float("nan")

    @property
    def top5(self) -> float:
        return float(self._topk_correct(5).float().mean()) if self.videos else float("nan")

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(top-1 per class, videos per class); NaN accuracy for classes without a video."""
        k = self.probs.shape[1]
        labels = self.labels[self.evaluated]
        correct = (self.predictions[self.evaluated] == labels).float()
        counts = torch.bincount(labels, minlength=k).numpy()
        hits = torch.bincount(labels, weights=correct, minlength=k).numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan), counts

    @property
    def mean_class(self) -> float:
        accuracy, counts = self.per_class()
        return float(np.mean(accuracy[counts > 0])) if (counts > 0).any() else float("nan")

    def confusion(self) -> np.ndarray:
        k = self.probs.shape[1]
        labels, predicted = self.labels[self.evaluated], self.predictions[self.evaluated]
        return torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).numpy()

    def class_gates(self) -> np.ndarray | None:
        """Mean MBGF gate weights per true class ``[K, 3]`` (NaN rows for classes without a video)."""
        if self.gates is None:
            return None
        k = self.probs.shape[1]
        labels, gates = self.labels[self.evaluated], self.gates[self.evaluated].double()
        sums = torch.zeros(k, 3, dtype=torch.float64).index_add_(0, labels, gates)
        counts = torch.bincount(labels, minlength=k).double()[:, None]
        return (sums / counts).numpy()

    def numbers(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "mean_class": self.mean_class,
                "videos": self.videos, "skipped": self.skipped}


@torch.no_grad()
def evaluate_loader(model, loader, class_tokens: torch.Tensor, total: int, labels, device,
                    autocast=None, explain: bool = False, bar=None, description: str = "eval") -> EvalResult:
    """Score every video of ``loader`` (test items ``[B, V, T, 3, H, W]``) on every process and gather.

    ``total``: the dataset's length; ``labels``: its ``total`` labels (from the list, so a video
    replaced after a decoding failure is never scored under another's label).
    """
    model = checkpoint.unwrap(model)
    if explain:
        inference.require_gates(model)
    was_training = model.training
    model.eval()
    indices, rows, gate_rows = [], [], []
    task = bar.add_task(description, total=len(loader), info="") if bar is not None else None
    with torch.random.fork_rng(devices=[]):  # starting the loader draws a seed: leave the training's stream
        batches = iter(loader)
    for views, _, index in inference.sharing_cores(batches, loader.num_workers, device):
        # The multi-view rule of every inference command (mbgf predict scores its videos the same way).
        scores = inference.score_views(model, views.to(device, non_blocking=True), class_tokens, autocast, explain)
        rows.append(scores.probs.cpu())
        if explain:
            gate_rows.append(scores.gates.cpu())
        indices.append(index)
        if task is not None:
            bar.advance(task)
    if task is not None:
        bar.remove_task(task)
    model.train(was_training)

    num_classes = class_tokens.shape[0]
    index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
    values = torch.cat(rows) if rows else torch.zeros(0, num_classes)
    if explain:
        values = torch.cat([values, torch.cat(gate_rows) if gate_rows else torch.zeros(0, 3)], dim=1)
    gathered, seen = distributed.gather_predictions(index, values, total)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return EvalResult(probs=gathered[:, :num_classes], labels=labels, evaluated=seen,
                      gates=gathered[:, num_classes:] if explain else None)


# ------------------------------------------------------------------------------------------------
# `mbgf eval`
# ------------------------------------------------------------------------------------------------


def model_source(cfg: EvalConfig) -> inference.ModelSource:
    """``--checkpoint``, or zero-shot ``--pretrained`` (``--zero-shot`` says so explicitly)."""
    if cfg.zero_shot and not cfg.pretrained:
        raise UserError("--zero-shot needs --pretrained NAME (a CLIP name such as ViT-B/16, or a weights file)")
    if not cfg.checkpoint and not cfg.pretrained:
        raise UserError("give --checkpoint DIR (or --zero-shot --pretrained NAME)")
    return inference.ModelSource.of(cfg)


def check_outputs(cfg: EvalConfig) -> None:
    """``--predictions`` (a file) and ``--plot`` (a folder of mbgf's plots), before any work."""
    if cfg.predictions:
        check_output_file(cfg.predictions, "--predictions")
    if cfg.plot:
        check_output_folder(cfg.plot, "--plot", PLOTS_KIND)


def evaluate(cfg: EvalConfig) -> tuple[EvalResult, dict]:
    """Run ``mbgf eval``: returns the result and a description (model, dataset, views, paths)."""
    from mbgf_cli import presets
    from mbgf_cli.data import read_labels
    from mbgf_cli.resources import resolve_device

    source = model_source(cfg)
    preset = presets.get_preset(cfg.dataset) if cfg.dataset else None
    views = inference.parse_views(cfg.views) if cfg.views else (preset.test_views if preset else (1, 1))
    check_outputs(cfg)
    resolve_device(cfg.device)  # one message for a device that is not here, before any process group
    ctx = distributed.setup(cfg.device)
    try:
        root, list_file, label_file = resolve_eval_data(cfg, preset)
        class_names = read_labels(label_file)
        # the model, its classes, prompts, precision and compiling: as mbgf predict has them
        predictor = inference.Predictor.from_source(source, cfg.prompts, ctx.device, cfg.amp, compile=cfg.compile)
        if predictor.class_names and list(predictor.class_names) != list(class_names):
            raise UserError(class_mismatch_message(cfg.checkpoint, predictor.class_names, class_names, label_file))
        predictor.check_views(views, cfg.batch_size, cfg.views)
        if ctx.is_main:
            err_console.print(f"precision: {predictor.precision}{'; --compile' if cfg.compile else ''}",
                              highlight=False, soft_wrap=True)
        result, dataset = score_list(predictor, cfg, ctx, root, list_file, class_names, views)
        info = {"model": predictor.name, "list": str(dataset.list_file), "views": f"{views[0]}x{views[1]}",
                "class_names": class_names, "skipped_line": skipped_line(dataset, cfg) if result.skipped else None}
        if result.skipped and not result.videos:
            raise UserError(f"none of the {result.skipped} videos of {dataset.list_file} could be read; "
                            f"{info['skipped_line']}")
        if ctx.is_main:
            write_outputs(cfg, result, dataset.samples, class_names)
        return result, info
    finally:
        distributed.cleanup()


def score_list(predictor, cfg: EvalConfig, ctx, root, list_file, class_names, views):
    """Every video of the list through the predictor's model, on every process, gathered."""
    from mbgf_cli.data import VideoDataset, build_loader
    from mbgf_cli.frame_cache import CachedVideoDataset

    config = predictor.config
    dataset_class = CachedVideoDataset if cfg.cache_decoded else VideoDataset
    dataset = dataset_class(root, list_file, len(class_names), frames=config.frames, input_size=config.input_size,
                            train=False, views=views, decoder=cfg.decoder, strict=cfg.strict,
                            mean=config.input_mean, std=config.input_std)
    workers = cfg.workers if cfg.workers is not None else inference.default_workers(ctx.device)
    loader = build_loader(dataset, batch_size=cfg.batch_size, workers=workers, shuffle=False,
                          drop_last=False, distributed=ctx.distributed)
    tokens = predictor.class_tokens(class_names)
    with progress(transient=True) as bar:
        if cfg.cache_decoded:
            dataset.fill(workers=workers, bar=bar)
        result = evaluate_loader(predictor.model, loader, tokens, len(dataset), [label for _, label in dataset.samples],
                                 ctx.device, autocast=predictor.autocast, explain=cfg.explain, bar=bar,
                                 description=f"eval {views[0]}x{views[1]} views")
    return result, dataset


def write_outputs(cfg: EvalConfig, result: EvalResult, samples, class_names) -> None:
    if cfg.predictions:
        write_predictions(cfg.predictions, result, samples, class_names)
    if cfg.plot:
        from mbgf_cli import plots

        accuracy, _ = result.per_class()
        folder = Path(cfg.plot)
        plots.confusion_matrix(result.confusion(), class_names, folder / "confusion_matrix.png")
        plots.per_class_accuracy(np.nan_to_num(accuracy), class_names, folder / "per_class_accuracy.png")
        record_outputs(folder, PLOTS_KIND, ["confusion_matrix.png", "per_class_accuracy.png"])


def skipped_line(dataset, cfg: EvalConfig) -> str:
    """What was skipped: the list goes next to --predictions when given, else the first few are named."""
    if cfg.predictions and distributed.is_main():
        return dataset.skipped_summary(Path(cfg.predictions).with_name("skipped.txt"))
    failures = dataset.failures()
    named = ", ".join(f"{path} ({reason})" for path, reason in failures[:5])
    more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
    return f"{len(failures)} video(s) skipped (not scored): {named}{more}"


def resolve_eval_data(cfg: EvalConfig, preset) -> tuple[Path, str, Path]:
    from mbgf_cli import presets

    if cfg.root:
        root = Path(cfg.root)
    elif preset is not None and preset.name == "synthetic":
        root = presets.ensure_synthetic()
    else:
        raise UserError("give the dataset folder with --root DIR (or --dataset synthetic)")
    list_file = cfg.list_file or "val.txt"
    label_file = presets.resolve_label_file(root, cfg.labels, preset)
    return root, list_file, label_file


def class_mismatch_message(checkpoint_dir, trained: list[str], names: list[str], label_file) -> str:
    if len(trained) != len(names):
        detail = f"it was trained on {len(trained)} classes, {label_file} has {len(names)}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(trained, names, strict=False)) if a != b)
        detail = f"class {i} is {trained[i]!r} in the checkpoint but {names[i]!r} in {label_file}"
    return (f"{checkpoint_dir}: the checkpoint's classes differ from the dataset's ({detail}); "
            "evaluate on its own label set, or use --zero-shot")


def write_predictions(path, result: EvalResult, samples, class_names) -> None:
    """One row per video: path, true label, predicted label, its probability, the top-5, or 'skipped'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = min(5, result.probs.shape[1])
    top_p, top_i = result.probs.topk(k, dim=1)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "label_name", "predicted", "predicted_name", "probability",
                         "correct", "top5", "status"])
        for i, (video, label) in enumerate(samples):
            if not result.evaluated[i]:
                writer.writerow([video, label, class_names[label], "", "", "", "", "", "skipped"])
                continue
            predicted = int(top_i[i, 0])
            writer.writerow([video, label, class_names[label], predicted, class_names[predicted],
                             f"{float(top_p[i, 0]):.6f}", int(predicted == label),
                             " ".join(str(int(c)) for c in top_i[i]), "ok"])


def print_result(result: EvalResult, info: dict, cfg: EvalConfig) -> None:
    from rich.table import Table

    class_names = info["class_names"]
    if cfg.as_json:
        out = {**result.numbers(), "views": info["views"], "model": info["model"], "list": info["list"]}
        if cfg.per_class:
            accuracy, counts = result.per_class()
            out["per_class"] = {name: {"top1": None if math.isnan(a) else float(a), "videos": int(c)}
                                for name, a, c in zip(class_names, accuracy, counts, strict=True)}
        if cfg.explain:
            gates = result.class_gates()
            out["gates"] = {name: dict(zip(BRANCHES, map(_json_float, row), strict=True)) for name, row in zip(class_names, gates, strict=True)}
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"{info['model']} on {info['list']} ({info['views']} views)", title_justify="left")
    for column in ("top-1 (%)", "top-5 (%)", "mean class (%)", "videos", "skipped"):
        table.add_column(column, justify="right")
    table.add_row(_pct(result.top1), _pct(result.top5), _pct(result.mean_class), str(result.videos),
                  str(result.skipped))
    console.print(table)
    if cfg.per_class or cfg.explain:
        accuracy, counts = result.per_class()
        gates = result.class_gates() if cfg.explain else None
        per = Table(title="per class" + (" (mean MBGF gate weight per branch)" if cfg.explain else ""),
                    title_justify="left")
        per.add_column("class")
        per.add_column("videos", justify="right")
        per.add_column("top-1 (%)", justify="right")
        if gates is not None:
            for branch in BRANCHES:
                per.add_column(branch, justify="right")
        for c, name in enumerate(class_names):
            row = [name, str(int(counts[c])), _pct(accuracy[c])]
            if gates is not None:
                row += ["-" if math.isnan(g) else f"{g:.3f}" for g in gates[c]]
            per.add_row(*row)
        console.print(per)
    if info.get("skipped_line"):
        err_console.print(info["skipped_line"])
    if cfg.predictions:
        err_console.print(f"predictions written to {cfg.predictions}")
    if cfg.plot:
        err_console.print(f"plots in {cfg.plot}")


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _json_float(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
