"""``mbgf reproduce TABLE``: one command per published table. It checks what the table needs (data
folders, CLIP weights), plans every run (the mbgf command that makes it, its recipe, its cost), runs
or resumes them (each command resumes itself: ``mbgf train`` from its run folder, ``mbgf fewshot``
run by run), and prints the table beside the published numbers with the difference.

Tables: ``k400`` (supervised, each variant with and without MBGF), ``transfer`` (Kinetics-400 ->
UCF101 / HMDB51 fine-tuning), ``fewshot-hmdb51`` and ``fewshot-ucf101`` (K = 2, 4, 8, 16), and
``synthetic``, the stand-in that runs on a CPU: the README's few-shot table on the generated data.

Cost: FLOPs per clip from ``mbgf_cli.flops`` (forward; training counts 3x: forward and backward),
over every clip a run sees, turned into GPU-hours at an assumed sustained rate (``ASSUMED_TFLOPS``);
and, where asked, one measured training step of the run's model on this machine.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mbgf_cli import fewshot, outputs, presets, tables
from mbgf_cli.errors import UserError
from mbgf_cli.protocols.configs import ReproduceConfig

TABLES = ("k400", "transfer", "fewshot-hmdb51", "fewshot-ucf101", "synthetic")
SHOTS = (2, 4, 8, 16)
# A sustained rate for the estimate: an A100's bf16 peak (312 TFLOP/s) at 40% utilisation.
ASSUMED_TFLOPS = 125.0
WHERE = {  # where each dataset comes from, and the command that prepares it
    "k400": "Kinetics-400: github.com/cvdfoundation/kinetics-dataset, then `mbgf prepare-data k400 --annotations "
            "ANN --videos VIDEOS -o {path}`",
    "ucf101": "UCF101: www.crcv.ucf.edu/data/UCF101.php, then `mbgf prepare-data ucf101 --splits ucfTrainTestlist "
              "--videos UCF-101 -o {path}`",
    "hmdb51": "HMDB51: serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database, then `mbgf "
              "prepare-data hmdb51 --splits SPLITS --videos VIDEOS -o {path}`",
}
# Videos in the official lists, for a plan made before the data is there (split 1 for UCF101/HMDB51).
NOMINAL_VIDEOS = {"k400": (240436, 19796), "ucf101": (9537, 3783), "hmdb51": (3570, 1530)}
# Published numbers the tables are compared with: (row, column) -> top-1 %, and the source.
PUBLISHED = {
    "k400": ({("xclip", "top-1"): 83.8, ("xclip", "top-5"): 95.7},
             "X-CLIP-B/16 8x224 (X-CLIP's README, Model Zoo)"),
    "fewshot-hmdb51": ({("xclip", f"Q={k}"): v for k, v in zip(SHOTS, (53.0, 57.3, 62.8, 64.0), strict=True)},
                       "X-CLIP-B/16 32x224 (X-CLIP's README, Model Zoo)"),
    "fewshot-ucf101": ({("xclip", f"Q={k}"): v for k, v in zip(SHOTS, (76.4, 83.4, 88.3, 91.4), strict=True)},
                       "X-CLIP-B/16 32x224 (X-CLIP's README, Model Zoo)"),
    "transfer": ({}, "none in mbgf's sources: the table shows mbgf's numbers alone"),
    "synthetic": ({("clip", f"Q={k}"): v for k, v in zip(SHOTS, (10.0, 12.0, 12.3, 12.3), strict=True)}
                  | {("clip+mbgf", f"Q={k}"): v for k, v in zip(SHOTS, (20.0, 21.7, 36.7, 53.7), strict=True)},
                  "mbgf's README (the synthetic few-shot table, one seed)"),
}


@dataclass
class Run:
    """One command of the plan and what it costs."""

    name: str
    argv: list[str]  # mbgf's arguments (without "mbgf")
    recipe: dict  # model, variant, mbgf, frames, input_size, epochs, total_batch
    train_clips: int  # clips seen in training (epochs x videos)
    eval_clips: int  # clips scored (videos x views)
    done: Path | None = None  # a file whose presence means the run is finished
    gflops: float = 0.0  # per clip, forward
    measured_s: float | None = None  # one training step of one clip, here

    @property
    def tflops(self) -> float:
        return self.gflops * (3 * self.train_clips + self.eval_clips) / 1e3

    @property
    def gpu_hours(self) -> float:
        return self.tflops / ASSUMED_TFLOPS / 3600

    @property
    def measured_hours(self) -> float | None:
        if self.measured_s is None:
            return None
        return self.measured_s * (3 * self.train_clips + self.eval_clips) / 3 / 3600


@dataclass
class Plan:
    table: str
    out: Path
    runs: list[Run]
    missing: list[str] = field(default_factory=list)  # one sentence each: what, where to get it
    notes: list[str] = field(default_factory=list)
    kind: str = "reproduce"  # the output folder's marker: a few-shot table's folder is its fewshot's
    writes: tuple[str, ...] = ()  # the entries of ``out`` the runs write


def _variant_args(variant: str) -> list[str]:
    base = tables.base_variant(variant)
    return ["--variant", base or variant] + ([] if base else ["--no-mbgf"])


@functools.cache  # one plan asks once per variant: Kinetics' lists are read once
def _counts(root: Path | None, dataset: str) -> tuple[int, int]:
    """(train, val) videos: from the lists when the data is there, else the official counts."""
    if root is not None and (root / "train.txt").is_file() and (root / "val.txt").is_file():
        return tuple(sum(1 for line in (root / name).read_text(encoding="utf-8").splitlines() if line.strip())
                     for name in ("train.txt", "val.txt"))
    return NOMINAL_VIDEOS[dataset]


def _data(options: ReproduceConfig, dataset: str, missing: list[str]) -> Path:
    path = Path(options.root) if options.root and options.table != "transfer" else Path(options.data) / dataset
    if not (path / "train.txt").is_file() or not (path / "val.txt").is_file():
        missing.append(f"{path}: no train.txt/val.txt; get {WHERE[dataset].format(path=path)}")
    return path


def _weights(model: str, missing: list[str]) -> None:
    from clip import loading
    from clip.released import released_model

    released = released_model(model)
    if released is None:
        return  # tiny: trained here, no weights to fetch
    path = loading.cache_dir() / released.filename
    if not path.is_file():
        missing.append(f"{path}: OpenAI's {released.name} weights, downloaded on first use from "
                       f"{loading.model_url(released.name)} (or copy the file there)")


def _fewshot_runs(options: ReproduceConfig, dataset: str, out: Path, variants, recipe: dict, classes: int, val: int,
                  root_args: list[str]) -> list[Run]:
    epochs = options.epochs or recipe["epochs"]
    argv = ["fewshot", *root_args, "--shots", *map(str, SHOTS), "--seeds", *map(str, options.seeds),
            "--variants", *variants, "--output", str(out)]
    if options.overwrite:
        argv.append("--overwrite")  # the folder holds the user's files too: the fewshot writes beside them
    if options.epochs:
        argv += ["--epochs", str(options.epochs)]
    if options.device:
        argv += ["--device", options.device]
    runs = []
    for k in SHOTS:
        for seed in options.seeds:
            for variant in variants:
                run_recipe = {**recipe, "variant": variant, "epochs": epochs, "shots": k}
                runs.append(Run(f"{variant} K={k} s{seed}", argv, run_recipe,
                                train_clips=epochs * k * classes, eval_clips=val,
                                done=out / "runs" / fewshot.run_name(variant, k, seed) / "summary.json"))
    return runs


def _fewshot_plan(options: ReproduceConfig, out: Path, plan: Plan) -> list[Run]:
    if options.table == "synthetic":
        recipe = {**presets.SYNTHETIC_RECIPE, **presets.SYNTHETIC_FEWSHOT_RECIPE}
        root = Path(options.root) if options.root else None
        _, val = _counts(root, "ucf101") if root else (1200, 300)
        root_args = ["--dataset", "synthetic", "--model", "tiny"] + (["--root", str(root)] if root else [])
        plan.notes.append("the stand-in starts from `mbgf train --dataset synthetic`'s model (trained first when "
                          "missing, as `mbgf fewshot` does)")
        return _fewshot_runs(options, "synthetic", out, ("clip", "clip+mbgf"), recipe, 12, val, root_args)
    dataset = options.table.split("-", 1)[1]
    root = _data(options, dataset, plan.missing)
    recipe = {**presets.XCLIP_RECIPE, **presets.FEWSHOT_RECIPE}
    _weights(recipe["model"], plan.missing)
    classes = presets.get_preset(dataset).num_classes
    _, val = _counts(root, dataset)
    views = presets.get_preset(dataset).test_views
    return _fewshot_runs(options, dataset, out, fewshot.VARIANTS, recipe, classes,
                         val * views[0] * views[1], ["--dataset", dataset, "--root", str(root)])


def _supervised_run(options: ReproduceConfig, name: str, dataset: str, root: Path, variant: str, out: Path,
                    extra: list[str]) -> Run:
    recipe = {**presets.get_preset(dataset).recipe, "variant": variant}
    epochs = options.epochs or recipe["epochs"]
    train, val = _counts(root, dataset)
    views = presets.get_preset(dataset).test_views
    argv = ["train", "--dataset", dataset, "--root", str(root), *_variant_args(variant), "--output", str(out), *extra]
    if options.epochs:
        argv += ["--epochs", str(options.epochs)]
    if options.device:
        argv += ["--device", options.device]
    return Run(name, argv, {**recipe, "epochs": epochs}, train_clips=epochs * train,
               eval_clips=val * views[0] * views[1], done=out / "summary.json")


def _eval_run(train_run: Run, dataset: str, root: Path, out: Path) -> Run:
    views = presets.get_preset(dataset).test_views
    result = out.parent / f"{out.name}-eval.json"
    argv = ["eval", "--checkpoint", str(out / "best"), "--dataset", dataset, "--root", str(root),
            "--views", f"{views[0]}x{views[1]}", "--json"]
    return Run(f"{train_run.name}: eval {views[0]}x{views[1]}", argv, train_run.recipe, 0,
               train_run.eval_clips, done=result)


def _supervised_plan(options: ReproduceConfig, out: Path, plan: Plan) -> list[Run]:
    runs = []
    k400 = _data(options, "k400", plan.missing)
    _weights("b16", plan.missing)
    variants = fewshot.VARIANTS if options.table == "k400" else ("xclip", "xclip+mbgf")
    for variant in variants:
        folder = out / f"k400-{variant.replace('+', '-')}"
        train = _supervised_run(options, f"{variant} on k400", "k400", k400, variant, folder, [])
        runs += [train, _eval_run(train, "k400", k400, folder)] if options.table == "k400" else [train]
    if options.table == "transfer":
        for dataset in ("ucf101", "hmdb51"):
            root = _data(options, dataset, plan.missing)
            for variant in variants:
                start = out / f"k400-{variant.replace('+', '-')}" / "best"
                folder = out / f"k400-to-{dataset}-{variant.replace('+', '-')}"
                train = _supervised_run(options, f"{variant} k400 -> {dataset}", dataset, root, variant, folder,
                                        ["--init", str(start)])
                runs += [train, _eval_run(train, dataset, root, folder)]
    return runs


def make_plan(options: ReproduceConfig) -> Plan:
    """Every run of the table and what is missing; costs filled in."""
    if options.table not in TABLES:
        raise UserError(f"TABLE must be one of {', '.join(TABLES)}, got {options.table!r}")
    if options.root and options.table in ("k400", "transfer"):
        raise UserError(f"--root names the dataset of a one-dataset table; the {options.table} table reads "
                        f"--data DIR (k400/, ucf101/, hmdb51/ in it)")
    out = Path(options.out or f"runs/reproduce-{options.table}")
    plan = Plan(options.table, out, [])
    if options.table.startswith("fewshot") or options.table == "synthetic":
        plan.runs = _fewshot_plan(options, out, plan)
        plan.kind, plan.writes = fewshot.KIND, fewshot.WRITES
    else:
        plan.runs = _supervised_plan(options, out, plan)
        plan.writes = tuple(sorted({_entry(out, run) for run in plan.runs}))
    if not options.dry_run:  # the folder is checked before any work (a dry run writes nothing)
        outputs.check_output_folder(out, "--output", plan.kind, options.overwrite, writes=plan.writes)
    _cost(plan, options)
    return plan


@functools.cache
def _gflops(model: str, variant: str, mbgf: bool, frames: int, input_size: int | None) -> float:
    from fusion.config import VideoModelConfig
    from mbgf_cli import flops

    config = VideoModelConfig(model=model, variant=variant, mbgf=mbgf, frames=frames, input_size=input_size)
    return flops.video_model_cost(config).gflops


def _cost(plan: Plan, options: ReproduceConfig) -> None:
    from fusion.config import VideoModelConfig

    per_config: dict[tuple, tuple[float, float | None]] = {}
    for run in plan.runs:
        r = run.recipe
        variant = tables.base_variant(r["variant"]) or r["variant"]
        key = (r["model"], variant, tables.base_variant(r["variant"]) is not None, r["frames"], r["input_size"])
        if key not in per_config:
            config = VideoModelConfig(model=key[0], variant=key[1], mbgf=key[2], frames=key[3], input_size=key[4])
            gflops = _gflops(*key)
            measure = options.measure
            if measure is None:
                import torch

                measure = key[0] == "tiny" or torch.cuda.is_available()
            per_config[key] = (gflops, measure_step(config, options.device) if measure else None)
        run.gflops, run.measured_s = per_config[key]


def measure_step(config, device: str | None = None) -> float:
    """Seconds of one training step (forward and backward) on one clip of ``config``'s model, here; the
    second of two steps (the first pays for allocation)."""
    import torch

    import fusion
    from mbgf_cli.resources import resolve_device

    device = resolve_device(device)
    model = fusion.build_from_config(config).to(device).train()
    clip = torch.randn(1, config.frames, 3, config.input_size, config.input_size, device=device)
    seconds = 0.0
    for _ in range(2):
        start = time.perf_counter()
        model.encode_video(clip).float().pow(2).mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds


def _entry(out: Path, run: Run) -> str:
    """The entry of ``out`` a supervised run writes: its run folder, or its eval's JSON."""
    written = Path(run.argv[run.argv.index("--output") + 1]) if "--output" in run.argv else run.done
    return written.relative_to(out).parts[0]


def launcher() -> list[str]:
    """How each command is started: torchrun over every GPU when there are several, else one process."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus), "-m", "mbgf_cli"]
    return [sys.executable, "-m", "mbgf_cli"]


def execute(plan: Plan, on_command=None) -> None:
    """Run every distinct command not finished yet (each resumes itself); an eval's JSON is kept."""
    started = []
    if plan.kind != fewshot.KIND:  # mbgf fewshot marks its own folder
        outputs.record_outputs(plan.out, plan.kind, plan.writes)
    for run in plan.runs:
        if run.argv in started or (run.done is not None and run.done.is_file()):
            continue
        started.append(run.argv)
        if on_command is not None:
            on_command(run)
        command = launcher() + run.argv
        if run.argv[0] == "eval":
            result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
            if result.returncode == 0:
                run.done.write_text(result.stdout)
        else:  # its own tables are progress here: stdout is the reproduce table (or its JSON)
            result = subprocess.run(command, stdout=2, env=os.environ.copy())
        if result.returncode == 2:  # mbgf's refusals: the command said why, nothing to resume
            raise UserError(f"`mbgf {' '.join(run.argv)}` refused to run (its message is above)")
        if result.returncode != 0:
            raise UserError(f"`mbgf {' '.join(run.argv)}` stopped with exit code {result.returncode}; run the "
                            "same reproduce command again to resume")


def measured_table(plan: Plan) -> tables.ResultTable:
    """The table from the finished runs' own records."""
    if plan.table.startswith("fewshot") or plan.table == "synthetic":
        results = fewshot.read_results_csv(plan.out / "results.csv")
        variants = list(dict.fromkeys(r.recipe["variant"] for r in plan.runs))
        return fewshot.results_table(results, variants, list(SHOTS), title=f"{plan.table}: K-shot top-1 (%)")
    values, columns = {}, []
    for run in plan.runs:
        if run.argv[0] != "eval" or not run.done.is_file():
            continue
        numbers = json.loads(run.done.read_text())
        column = "top-1" if plan.table == "k400" else run.argv[run.argv.index("--dataset") + 1]
        for name, key in ((column, "top1"),) + ((("top-5", "top5"),) if plan.table == "k400" else ()):
            columns.append(name)
            values.setdefault((run.recipe["variant"], name), []).append(100 * numbers[key])
    columns = list(dict.fromkeys(columns))
    variants = list(dict.fromkeys(r.recipe["variant"] for r in plan.runs))
    indexed = {(v, columns.index(c)): vals for (v, c), vals in values.items()}
    table = tables.shots_table(indexed, variants, list(range(len(columns))), title=f"{plan.table}: top-1 (%)")
    from dataclasses import replace

    return replace(table, columns=columns)


def comparison(table: tables.ResultTable, name: str) -> list[tuple[str, str, list[str]]]:
    """(row label, what, cells) rows: mbgf's mean, the published number, and the difference."""
    published, _ = PUBLISHED[name]
    variants_by_label = {tables.variant_label(v): v for v in fewshot.VARIANTS}
    rows = []
    for label, cells in table.rows:
        variant = variants_by_label.get(label, label)
        ours = [c.text.split(" (")[0] for c in cells]
        theirs = [published.get((variant, column)) for column in table.columns]
        rows.append((label, "mbgf", ours))
        if any(v is not None for v in theirs):
            rows.append(("", "published", [tables.MISSING if v is None else f"{v:.1f}" for v in theirs]))
            rows.append(("", "difference", [tables.MISSING if v is None or c.mean is None else
                                            f"{round(c.mean, 1) - v:+.1f}" for v, c in zip(theirs, cells, strict=True)]))
    return rows
