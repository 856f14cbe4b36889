"""Regressions of the inference core and the option declarations (issues 20 and 21): outputs checked
before any work, bounded --workers, a run folder as --checkpoint, unreadable inputs, stale embeddings,
and predict equal to eval on a labelled list."""

import os
import stat

import pytest
import torch
from safetensors import safe_open

from tests.predict_support import colour_checkpoint, colour_frames
from tests.test_train_support import run_cli
from tests.videos import write_text_as_video, write_video


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory)


def test_predict_on_a_labelled_list_equals_evals_predictions(colour):
    from mbgf_cli import evaluation, inference
    from mbgf_cli.inference.configs import EvalConfig, PredictConfig

    root, checkpoint = colour
    common = dict(checkpoint=str(checkpoint), views="2x3", workers=0, batch_size=4, amp="off")
    evaluated, _ = evaluation.evaluate(EvalConfig(root=str(root), **common))
    predicted, _ = inference.predict(PredictConfig(inputs=[str(root / "val.txt")], **common))
    assert predicted.skipped == [] and len(predicted.videos) == evaluated.videos == 9
    assert torch.equal(predicted.predictions, evaluated.predictions)
    torch.testing.assert_close(predicted.probs, evaluated.probs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("command", ["predict", "embed", "eval", "train"])
def test_workers_beyond_the_machine_are_one_line_before_any_work(colour, tmp_path, capsys, command):
    root, checkpoint = colour
    args = {"predict": ["predict", root / "val.txt", "-c", checkpoint],
            "embed": ["embed", root / "val.txt", "-c", checkpoint, "-o", tmp_path / "e.safetensors"],
            "eval": ["eval", "-c", checkpoint, "--root", root],
            "train": ["train", "--dataset", "synthetic", "-o", tmp_path / "run"]}[command]
    code, stdout, stderr = run_cli([*args, "--workers", "100000"], capsys)
    assert code == 2 and "--workers 100000: this machine runs at most" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "run").exists()


def test_predict_csv_that_cannot_be_written_is_refused_before_any_work(colour, tmp_path, capsys):
    root, checkpoint = colour
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, stdout, stderr = run_cli(["predict", root / "val.txt", "-c", checkpoint, "--csv", a_file / "p.csv"], capsys)
    assert code == 2 and "--csv" in stderr and "is a file, not a folder" in stderr and stdout == ""
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            code, stdout, stderr = run_cli(["predict", root / "val.txt", "-c", checkpoint, "--csv",
                                            locked / "p.csv"], capsys)
        finally:
            locked.chmod(stat.S_IRWXU)
        assert code == 2 and "permission denied" in stderr and stdout == ""


def test_eval_outputs_are_checked_before_any_work(colour, tmp_path, capsys):
    root, checkpoint = colour
    code, stdout, stderr = run_cli(["eval", "-c", checkpoint, "--root", root, "--predictions", tmp_path], capsys)
    assert code == 2 and "--predictions" in stderr and "is a folder" in stderr and stdout == ""
    a_file = tmp_path / "plots.png"
    a_file.write_text("mine")
    code, stdout, stderr = run_cli(["eval", "-c", checkpoint, "--root", root, "--plot", a_file], capsys)
    assert code == 2 and "--plot" in stderr and "is a file" in stderr and a_file.read_text() == "mine"
    code, stdout, stderr = run_cli(["embed", root / "val.txt", "-c", checkpoint, "-o", tmp_path], capsys)
    assert code == 2 and "--output" in stderr and "is a folder" in stderr


def test_a_run_folder_is_taken_as_its_best(colour, tmp_path, capsys):
    import shutil

    root, checkpoint = colour
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run / "best")
    code, stdout, stderr = run_cli(["predict", root / "val.txt", "-c", run, "--workers", "0", "--json"], capsys)
    assert code == 0, stderr
    code, stdout, stderr = run_cli(["eval", "-c", run, "--root", root, "--workers", "0", "--json"], capsys)
    assert code == 0, stderr


def test_every_input_unreadable_exits_non_zero(colour, tmp_path, capsys):
    root, checkpoint = colour
    bad = write_text_as_video(tmp_path / "bad.mp4")
    code, stdout, stderr = run_cli(["predict", bad, "-c", checkpoint, "--workers", "0"], capsys)
    assert code == 2 and "none of the 1 video(s) could be read" in stderr
    code, stdout, stderr = run_cli(["embed", bad, "-c", checkpoint, "--workers", "0", "-o", tmp_path / "e.st"],
                                   capsys)
    assert code == 2 and "none of the 1 video(s) could be read" in stderr and not (tmp_path / "e.st").exists()


def test_embed_again_after_a_video_changed_equals_a_fresh_run(colour, tmp_path, capsys):
    root, checkpoint = colour
    video = write_video(tmp_path / "videos" / "a.mp4", frames=colour_frames(0, seed=1))
    write_video(tmp_path / "videos" / "b.mp4", frames=colour_frames(1, seed=2))
    args = ["-c", checkpoint, "--workers", "0", "--amp", "off"]
    output, fresh = tmp_path / "e.safetensors", tmp_path / "fresh.safetensors"
    assert run_cli(["embed", tmp_path / "videos", *args, "-o", output], capsys)[0] == 0
    write_video(video, frames=colour_frames(2, seed=3))  # now another class's colour
    os.utime(video, ns=(1, 1))  # whatever the clock's resolution, the stamp differs
    code, stdout, stderr = run_cli(["embed", tmp_path / "videos", *args, "-o", output], capsys)
    assert code == 0 and "up to date" not in stdout, stdout
    assert run_cli(["embed", tmp_path / "videos", *args, "-o", fresh], capsys)[0] == 0
    with safe_open(str(output), "pt") as again, safe_open(str(fresh), "pt") as new:
        assert torch.equal(again.get_tensor("video"), new.get_tensor("video"))
    code, stdout, _ = run_cli(["embed", tmp_path / "videos", *args, "-o", output], capsys)
    assert code == 0 and "up to date" in stdout


def test_report_to_and_its_alias_log_are_one_option():
    from mbgf_cli.settings import flag
    from mbgf_cli.train_config import TrainConfig

    assert flag(TrainConfig, "report_to") == "--report-to"
    [field] = [f for f in TrainConfig.__dataclass_fields__.values() if f.name == "report_to"]
    assert field.metadata["flags"] == ("--report-to", "--log")
    assert TrainConfig.from_dict({"log": "tensorboard"}).report_to == "tensorboard"  # runs recorded before


def test_one_declaration_per_option_name():
    """The same flag has one default and one meaning on eval, predict and embed."""
    import dataclasses

    from mbgf_cli.inference.configs import EmbedConfig, EvalConfig, PredictConfig

    def by_flag(cls):
        return {f.metadata["flags"][0]: f for f in dataclasses.fields(cls) if f.metadata.get("flags")}

    shared = set(by_flag(EvalConfig)) & set(by_flag(PredictConfig)) & set(by_flag(EmbedConfig))
    assert {"--frames", "--views", "--workers", "--batch-size", "--amp", "--device", "--checkpoint"} <= shared
    for name in shared - {"--labels", "--json", "--explain"}:
        assert by_flag(EvalConfig)[name] is by_flag(PredictConfig)[name] is by_flag(EmbedConfig)[name], name


def test_views_memory_bound_applies_to_predict_and_has_a_switch(colour, capsys, monkeypatch):
    from mbgf_cli import heuristics

    root, checkpoint = colour
    monkeypatch.setattr(heuristics, "check_memory", _refuse_everything)
    code, _, stderr = run_cli(["predict", root / "val.txt", "-c", checkpoint, "--workers", "0"], capsys)
    assert code == 2 and "--views 1x1" in stderr and heuristics.VIEWS_MEMORY_BOUND in stderr
    monkeypatch.setenv(heuristics.VIEWS_MEMORY_BOUND, "0")
    code, _, stderr = run_cli(["predict", root / "val.txt", "-c", checkpoint, "--workers", "0"], capsys)
    assert code == 0, stderr


def _refuse_everything(nbytes, what, fraction=0.5):
    from mbgf_cli.errors import UserError

    raise UserError(f"{what} needs more than there is")


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_device_that_is_not_here_is_one_line(colour, capsys, command):
    root, checkpoint = colour
    args = {"predict": ["predict", root / "val.txt"], "eval": ["eval", "--root", root]}[command]
    code, _, stderr = run_cli([*args, "-c", checkpoint, "--device", "cuda:7", "--workers", "0"], capsys)
    assert code == 2 and "--device cuda:7: this machine has no such device; it has cpu" in " ".join(stderr.split()), stderr


def test_the_tiny_fp32_rule_has_a_switch(monkeypatch):
    from mbgf_cli import heuristics, precision

    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: "AMX-BF16")
    cpu = torch.device("cpu")
    assert precision.choose_amp("auto", cpu, "tiny", training=True)[0] is None
    assert precision.choose_amp("auto", cpu, "tiny", training=False)[0] is torch.bfloat16  # inference gains
    monkeypatch.setenv(heuristics.TINY_FP32, "0")
    assert precision.choose_amp("auto", cpu, "tiny", training=True)[0] is torch.bfloat16


def test_the_missing_matplotlib_note_names_the_extra_to_install(monkeypatch, capsys):
    """The note went through rich's markup, which took ``[plot]`` for a tag and printed ``pip install 'mbgf'``."""
    import builtins

    from mbgf_cli import plots

    real_import = builtins.__import__

    def without_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_matplotlib)
    monkeypatch.setattr(plots, "_noted", False)
    assert plots.training_curve([], "curve.png") is None
    assert "pip install 'mbgf[plot]'" in " ".join(capsys.readouterr().err.split())
