"""`mbgf fewshot` end to end through the training engine, on a tiny synthetic set b, starting from a tiny
model trained one epoch on set a: the runs, their starting weights, results.csv, resume, reuse, errors."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from mbgf_cli import app as app_module
from mbgf_cli import checkpoint, training
from mbgf_cli.data import synthetic

TINY = ["--frames", "4", "--input-size", "48", "--workers", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("fewshot")
    common = dict(frames=8, size=48, seed=0, show_progress=False, workers=1)
    synthetic.generate(base / "set_a", class_set="a", videos_per_class=3, val_fraction=0.34, **common)
    synthetic.generate(base / "set_b", class_set="b", videos_per_class=4, val_fraction=0.25, **common)
    training.train(training.TrainConfig(dataset="synthetic", root=str(base / "set_a"), model="tiny", frames=4,
                                        input_size=48, epochs=1, batch_size=8, total_batch=8, workers=0,
                                        out=str(base / "pretrain"), plot=False))
    return base


def run_mbgf(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        app_module.main([str(a) for a in args])
    return exit_info.value.code


def fewshot_args(base, out, *extra):
    return ["fewshot", "--dataset", "synthetic", "--root", base / "set_b", "--init", base / "pretrain" / "best",
            "--output", out, *TINY, *extra]


def test_runs_start_from_the_same_weights_and_are_read_back(setup, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    # A learning rate of ~0 leaves each run at its starting weights, which are then checked.
    args = fewshot_args(setup, out, "--shots", 1, 2, "--variants", "clip", "clip+mbgf", "--lr", "1e-12", "--json")
    capsys.readouterr()
    assert run_mbgf(*args) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert [(r["variant"], r["shots"], r["seed"]) for r in report["runs"]] == [
        ("clip", 1, 0), ("clip+mbgf", 1, 0), ("clip", 2, 0), ("clip+mbgf", 2, 0)]  # a sampled seed is a number
    assert all(r["videos"] == 12 for r in report["runs"])  # the full val list: 12 classes x 1
    assert [row["method"] for row in report["table"]["rows"]] == ["CLIP", "CLIP +MBGF"]
    assert report["table"]["columns"] == ["Q=1", "Q=2"]

    # K-shot lists: K per class, nested, drawn from set b's train list.
    train = set((setup / "set_b" / "train.txt").read_text().splitlines())
    k1 = (out / "splits" / "K1_seed0.txt").read_text().splitlines()
    k2 = (out / "splits" / "K2_seed0.txt").read_text().splitlines()
    assert len(k1) == 12 and len(k2) == 24 and set(k1) < set(k2) <= train

    # results.csv: every run, top-1 in % as the run's own summary says.
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        summary = json.loads((out / "runs" / f"{row['variant']}_K{row['shots']}_seed0" / "summary.json").read_text())
        assert float(row["top1"]) == pytest.approx(100 * summary["final"]["top1"], abs=1e-3)

    # Starting weights: clip+mbgf from the whole checkpoint, clip from the checkpoint's CLIP weights.
    start, _ = checkpoint.load_checkpoint(setup / "pretrain" / "best")
    start_state = start.state_dict()
    mbgf_run, _ = checkpoint.load_checkpoint(out / "runs" / "clip+mbgf_K2_seed0" / "last")
    clip_run, _ = checkpoint.load_checkpoint(out / "runs" / "clip_K2_seed0" / "last")
    assert not clip_run.config.mbgf and mbgf_run.config.mbgf
    for name, value in mbgf_run.state_dict().items():
        torch.testing.assert_close(value, start_state[name], atol=1e-6, rtol=0)
    [clip_file] = [load_file(path) for path in out.glob("start_clip-*.safetensors")]
    assert set(clip_file) == {k for k in start_state if start.is_clip_parameter(k)}
    for name, value in clip_run.state_dict().items():
        if clip_run.is_clip_parameter(name):
            torch.testing.assert_close(value, start_state[name], atol=1e-6, rtol=0)

    # Second invocation: every run is read back, nothing is trained.
    def no_training(cfg):
        raise AssertionError(f"trained {cfg.out} again")

    monkeypatch.setattr(training, "train", no_training)
    assert run_mbgf(*args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["runs"] == report["runs"]


def test_an_interrupted_run_resumes_and_split_files_are_reused(setup, tmp_path, capsys):
    out = tmp_path / "out"
    args = fewshot_args(setup, out, "--shots", 2, "--variants", "clip")
    assert run_mbgf(*args, "--stop-at-step", 1) == 130  # 24 clips, batch 8: stopped after step 1 of 3
    run_dir = out / "runs" / "clip_K2_seed0"
    assert (run_dir / "last").is_dir() and not (run_dir / "summary.json").exists()
    capsys.readouterr()
    assert run_mbgf(*args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "clip, K=2, seed 0: resuming" in err
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1]
    assert json.loads((run_dir / "summary.json").read_text())["final"]["epoch"] == 1

    # --split-file: the given list is trained on, nothing is sampled.
    reuse = tmp_path / "reuse"
    published = tmp_path / "published_2shot.txt"
    published.write_text((out / "splits" / "K2_seed0.txt").read_text())
    capsys.readouterr()
    assert run_mbgf(*fewshot_args(setup, reuse, "--variants", "clip", "--split-file", published, "--json")) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert (run["shots"], run["seed"], run["split_file"]) == (2, "published_2shot", str(published))
    assert not (reuse / "splits").exists()


def test_too_few_videos_names_the_classes(setup, tmp_path, capsys):
    assert run_mbgf(*fewshot_args(setup, tmp_path / "out", "--shots", 2, 4)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "train.txt: 12 classes have fewer than K=4 training videos:" in err
    assert "'something rotating clockwise' (3)" in err and "'two things merging' (3)" in err


def test_synthetic_without_a_starting_model_says_how_to_make_one(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_mbgf("fewshot", "--dataset", "synthetic", "--root", setup / "set_b", *TINY) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "runs/synthetic-tiny-clip-mbgf/best: no starting model" in err
    assert "run `mbgf train --dataset synthetic` first" in err


def test_no_dataset_runs_the_embedded_demonstration_and_trains_its_starting_model_once(tmp_path, capsys,
                                                                                        monkeypatch):
    """`mbgf fewshot --shots ...` alone: class set b from the cache, starting from the set-a model, which is
    trained into the cache first when there is none (here at toy size: few small videos, one epoch)."""
    from mbgf_cli import presets

    monkeypatch.chdir(tmp_path)  # no runs/synthetic-tiny-clip-mbgf/ here
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path / "cache"))
    toy = dict(videos_per_class=3, frames=8, size=48, val_fraction=0.34, workers=1, show_progress=False)
    for key, value in toy.items():
        monkeypatch.setitem(presets.SYNTHETIC_GENERATION, key, value)
    monkeypatch.setitem(presets.SYNTHETIC_B_GENERATION, "videos_per_class", 3)
    for recipe in (presets.SYNTHETIC_RECIPE, presets.SYNTHETIC_FEWSHOT_RECIPE):
        monkeypatch.setitem(recipe, "epochs", 1)
    monkeypatch.setitem(presets.SYNTHETIC_RECIPE, "frames", 4)
    monkeypatch.setitem(presets.SYNTHETIC_RECIPE, "cache_decoded", False)  # a decoding pool costs more here

    capsys.readouterr()
    assert run_mbgf("fewshot", "--shots", 1, "--variants", "clip+mbgf", "--json") == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    start = presets.synthetic_start_dir()
    assert "no starting model in the cache: training it first on class set a" in " ".join(captured.err.split())
    assert (start / "summary.json").is_file() and (start / "best" / "model.safetensors").is_file()
    report = json.loads(captured.out)
    assert report["output"] == "runs/fewshot-synthetic" and str(start / "best") in report["start"]
    [run] = report["runs"]
    assert (run["variant"], run["shots"], run["videos"]) == ("clip+mbgf", 1, 12)  # set b's val list: 12 x 1
    set_b = presets.synthetic_dir(presets.SYNTHETIC_B_GENERATION)
    assert set((tmp_path / "runs/fewshot-synthetic/splits/K1_seed0.txt").read_text().splitlines()) <= set(
        (set_b / "train.txt").read_text().splitlines())
    mbgf_run, _ = checkpoint.load_checkpoint(tmp_path / "runs/fewshot-synthetic/runs/clip+mbgf_K1_seed0/last")
    assert mbgf_run.config.frames == 4  # the starting model's

    # Again: the starting model is in the cache and every run is read back; nothing trains.
    def no_training(cfg):
        raise AssertionError(f"trained {cfg.out or cfg.resume} again")

    monkeypatch.setattr(training, "train", no_training)
    assert run_mbgf("fewshot", "--shots", 1, "--variants", "clip+mbgf", "--json") == 0
    again = capsys.readouterr()
    assert "training it first" not in again.err and json.loads(again.out)["runs"] == report["runs"]


def test_a_folder_of_yours_is_refused_and_overwrite_writes_beside_it(setup, tmp_path, capsys):
    """The one output policy (mbgf_cli.outputs): a folder holding the user's files is refused before any
    work; --overwrite writes beside them; the protocol's own folder is then resumed without it."""
    from mbgf_cli import outputs, run_folder

    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    args = fewshot_args(setup, out, "--shots", 1, "--variants", "clip")
    capsys.readouterr()
    assert run_mbgf(*args) == 2
    assert "not empty and not written by `mbgf fewshot`" in " ".join(capsys.readouterr().err.split())
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    assert run_mbgf(*args, "--overwrite") == 0, capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "x"
    recorded = outputs.read_marker(out)
    assert recorded["kind"] == "fewshot" and "notes.txt" not in recorded["written"]
    assert {"splits", "runs", "results.csv", "table.md"} <= set(recorded["written"])
    assert {p.name for p in out.iterdir()} - {outputs.MARKER} <= {*recorded["written"], "notes.txt"}
    assert outputs.read_marker(out / "runs" / "clip_K1_seed0")["kind"] == run_folder.KIND  # each run: a train run

    capsys.readouterr()
    assert run_mbgf(*args) == 0  # its own folder: resumed, the finished run read back
    assert "clip, K=1, seed 0: finished, read back" in " ".join(capsys.readouterr().err.split())
    assert (out / "notes.txt").read_text() == "x"
