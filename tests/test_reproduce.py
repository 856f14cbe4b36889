"""`mbgf reproduce`: the plan of a real table (what is missing, every command, its cost), and the synthetic
stand-in end to end (its runs through `mbgf fewshot` in a subprocess, then the table beside the README's)."""

import json
import shlex
import shutil

import pytest

from mbgf_cli import app as app_module
from mbgf_cli import flops, training
from mbgf_cli.data import synthetic
from mbgf_cli.protocols import reproduce

# The README's lines (notes/protocols-readme.md), run as written.
README_DRY_RUN = "mbgf reproduce fewshot-hmdb51 --dry-run"
README_STAND_IN = "mbgf reproduce synthetic --root data/synthetic-b --epochs 1"
README_SET_B = ("mbgf prepare-data synthetic --class-set b --videos-per-class 17 --frames 8 --size 48 "
                "--val-fraction 0.06 -o data/synthetic-b")


def run_mbgf(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        app_module.main([str(a) for a in args])
    return exit_info.value.code


def test_plan_of_the_fewshot_table_names_what_is_missing_and_costs_every_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert run_mbgf(*shlex.split(README_DRY_RUN)[1:]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "mbgf reproduce fewshot-hmdb51: 24 runs into runs/reproduce-fewshot-hmdb51" in printed
    assert "missing: data/hmdb51: no train.txt/val.txt" in printed
    data = tmp_path / "data"
    assert run_mbgf("reproduce", "fewshot-hmdb51", "--data", data, "--dry-run", "--no-measure", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["runs"]) == 24  # 6 variants x K = 2, 4, 8, 16, one seed
    assert plan["missing"][0].startswith(f"{data / 'hmdb51'}: no train.txt/val.txt; get HMDB51")
    assert "ViT-B-16.pt: OpenAI's ViT-B/16 weights" in plan["missing"][1]
    run = plan["runs"][-1]
    assert run["command"] == (f"mbgf fewshot --dataset hmdb51 --root {data / 'hmdb51'} --shots 2 4 8 16 --seeds 0 "
                              "--variants clip clip+mbgf actionclip actionclip+mbgf xclip xclip+mbgf --output "
                              "runs/reproduce-fewshot-hmdb51")
    # Cost: FLOPs of the run's model (X-CLIP-B/16 +MBGF, 32x224) over every clip, training 3x.
    config = flops.fusion.VideoModelConfig(model="b16", variant="xclip", mbgf=True, frames=32, input_size=224)
    gflops = flops.video_model_cost(config).gflops
    assert run["gflops_per_clip"] == pytest.approx(gflops, abs=1e-3)
    assert run["train_clips"] == 50 * 16 * 51 and run["eval_clips"] == 1530 * 3  # the nominal split-1 val list
    assert run["gpu_hours"] == pytest.approx(gflops * (3 * run["train_clips"] + run["eval_clips"]) / 1e3 /
                                             reproduce.ASSUMED_TFLOPS / 3600, abs=1e-4)

    # Without --dry-run: refused before anything runs, naming what is missing.
    assert run_mbgf("reproduce", "fewshot-hmdb51", "--data", data, "--no-measure", "--output", tmp_path / "r") == 2
    assert "the fewshot-hmdb51 table needs what is missing above" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_k400_plan_trains_and_evaluates_each_variant():
    plan = reproduce.make_plan(reproduce.ReproduceConfig(table="k400", data="data", measure=False))
    commands = [" ".join(r.argv) for r in plan.runs]
    assert len(commands) == 12
    assert commands[0] == ("train --dataset k400 --root data/k400 --variant clip --no-mbgf --output "
                           "runs/reproduce-k400/k400-clip")
    assert commands[2] == "train --dataset k400 --root data/k400 --variant clip --output runs/reproduce-k400/k400-clip-mbgf"
    assert commands[3] == ("eval --checkpoint runs/reproduce-k400/k400-clip-mbgf/best --dataset k400 --root data/k400 "
                           "--views 4x3 --json")


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Set b with 16 training videos per class, and the starting model where `mbgf train --dataset
    synthetic` leaves it (a tiny model trained one epoch on a tiny set a)."""
    common = dict(frames=8, size=48, seed=0, show_progress=False, workers=1)
    synthetic.generate(tmp_path / "set_a", class_set="a", videos_per_class=3, val_fraction=0.34, **common)
    monkeypatch.chdir(tmp_path)
    assert run_mbgf(*shlex.split(README_SET_B)[1:]) == 0  # 16 train and 1 val video per class
    start = tmp_path / "runs" / "synthetic-tiny-clip-mbgf"
    training.train(training.TrainConfig(dataset="synthetic", root=str(tmp_path / "set_a"), model="tiny", frames=4,
                                        input_size=48, epochs=1, batch_size=8, total_batch=8, workers=0,
                                        out=str(tmp_path / "pretrain"), plot=False))
    shutil.copytree(tmp_path / "pretrain", start)
    return tmp_path


def test_reproduce_synthetic_end_to_end(stand_in, capsys):
    assert run_mbgf(*shlex.split(README_STAND_IN)[1:]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "synthetic: K-shot top-1 (%), beside the published numbers" in " ".join(printed.split())
    args = [*shlex.split(README_STAND_IN)[1:], "--json"]
    assert run_mbgf(*args) == 0  # every run finished: read back
    report = json.loads(capsys.readouterr().out)
    assert len(report["runs"]) == 8 and report["runs"][0]["step_seconds"] > 0
    assert report["table"]["columns"] == ["Q=2", "Q=4", "Q=8", "Q=16"]
    rows = {(row["method"], row["what"]): row["cells"] for row in report["comparison"]}
    assert rows[("", "published")] == ["20.0", "21.7", "36.7", "53.7"]  # the README's CLIP +MBGF row
    ours = [c["mean"] for c in report["table"]["rows"][1]["cells"]]
    differences = [row["cells"] for row in report["comparison"] if row["what"] == "difference"][1]
    assert differences == [f"{round(m, 1) - p:+.1f}" for m, p in zip(ours, (20.0, 21.7, 36.7, 53.7), strict=True)]
    assert all(run["done"] for run in report["runs"])


def test_an_output_folder_of_yours_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """The one output policy: a folder holding the user's files is refused before the plan is costed
    (no step is measured); --overwrite writes beside them but never over a name of theirs; a dry run
    writes nothing and checks nothing."""
    def no_measuring(*args, **kwargs):
        raise AssertionError("a step was measured")

    monkeypatch.setattr(reproduce, "measure_step", no_measuring)
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    for table, kind in (("synthetic", "fewshot"), ("k400", "reproduce")):
        assert run_mbgf("reproduce", table, "--data", tmp_path / "data", "-o", out, "--measure") == 2
        assert f"not empty and not written by `mbgf {kind}`" in " ".join(capsys.readouterr().err.split())
    (out / "k400-xclip").mkdir()  # a name a k400 run would write
    assert run_mbgf("reproduce", "k400", "--data", tmp_path / "data", "-o", out, "--overwrite", "--measure") == 2
    assert "k400-xclip is not mbgf's and would be replaced" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in out.iterdir()) == ["k400-xclip", "notes.txt"]
    assert (out / "notes.txt").read_text() == "x"
    plan = reproduce.make_plan(reproduce.ReproduceConfig(table="synthetic", out=str(out), overwrite=True,
                                                         measure=False))
    assert plan.runs[0].argv[-1] == "--overwrite" and plan.kind == "fewshot"
