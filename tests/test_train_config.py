"""Training settings checked before any work, and a run folder claimed only by a run that computed
something (issue 21 items 4, 5, 7 and the full disk; issue 20: settings resolved once, read-only)."""

import dataclasses
import errno
import json

import pytest
import torch

from mbgf_cli.errors import UserError
from mbgf_cli.train_config import TrainConfig, resolve_config
from tests.test_train_support import TINY_RUN, read_metrics, run_cli


def _args(root, out, *extra):
    return ["train", "--dataset", "synthetic", "--root", str(root), *TINY_RUN, "--output", str(out), *map(str, extra)]


def _recorded(tmp_path, **changes) -> str:
    settings = resolve_config(TrainConfig(dataset="synthetic")).to_dict()
    settings.update(changes)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(settings))
    return str(path)


@pytest.mark.parametrize("changes, expected", [
    ({"learning_rate": 0.5}, "'learning_rate' is not a training setting"),
    ({"lr": "fast"}, "'lr' must be a number or null, not \"fast\""),
    ({"epochs": 2.5}, "'epochs' must be an integer or null, not 2.5"),
    ({"mbgf": "yes"}, "'mbgf' must be true/false, not \"yes\""),
    ({"seed": True}, "'seed' must be an integer, not true"),
])
def test_config_refuses_unknown_keys_and_wrong_types_naming_the_key(tmp_path, changes, expected, capsys):
    path = _recorded(tmp_path, **changes)
    code, _, stderr = run_cli(["train", "--config", path, "--output", tmp_path / "run"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and f"--config {path}: {expected}" in message, message
    assert not (tmp_path / "run").exists()


def test_config_reads_a_recorded_log_as_report_to():
    from mbgf_cli.train_config import recorded_settings

    assert recorded_settings({"log": "tensorboard", "lr": 1e-3}) == {"report_to": "tensorboard", "lr": 1e-3}


def test_the_resolved_settings_are_read_only_and_filled_from_the_recipe():
    cfg = resolve_config(TrainConfig(dataset="synthetic", lr=2e-3))
    assert cfg.lr == 2e-3 and cfg.model == "tiny" and cfg.batch_size == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert dataclasses.replace(cfg, lr=1.0).lr == 1.0 and cfg.lr == 2e-3


def test_a_device_that_is_not_here_is_one_line_naming_it_and_those_that_are(tmp_path, capsys):
    from mbgf_cli.resources import available_devices

    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", "--root", tmp_path, "--device", missing,
                               "--output", tmp_path / "run"], capsys)
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert f"--device {missing}: this machine has no such device; it has {', '.join(available_devices())}" in stderr
    assert not (tmp_path / "run").exists()


def test_too_many_workers_are_refused_before_any_process_starts(tmp_path, capsys):
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", "--root", tmp_path, "--workers", "100000",
                               "--output", tmp_path / "run"], capsys)
    assert code == 2 and stderr.startswith("error: --workers 100000: this machine runs at most")
    assert not (tmp_path / "run").exists()


def test_a_refused_combination_claims_no_folder_and_the_corrected_command_runs(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = run_cli(_args(toy_dataset, out, "--batch-size", 8, "--total-batch", 4, "--epochs", 1), capsys)
    assert code == 2 and "--total-batch 4 is not a multiple of --batch-size 8" in stderr
    assert not out.exists()
    code, _, stderr = run_cli(_args(toy_dataset, out, "--batch-size", 4, "--total-batch", 4, "--epochs", 1), capsys)
    assert code == 0, stderr


def test_a_nan_before_the_first_checkpoint_leaves_the_folder_to_the_corrected_command(toy_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    (tmp_path / "run").mkdir()
    code, _, stderr = run_cli(_args(toy_dataset, out, "--lr", "5e-3", "--inject-nan-at-step", 2), capsys)
    assert code == 2 and "no checkpoint had been written yet" in " ".join(stderr.split())
    code, _, stderr = run_cli(_args(toy_dataset, out, "--epochs", 1), capsys)  # another lr: the folder is free
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_a_full_disk_in_the_first_epoch_advises_what_works_and_it_works(toy_dataset, tmp_path, monkeypatch, capsys):
    from mbgf_cli import checkpoint

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(checkpoint, "_write_file", full)
        code, _, stderr = run_cli(_args(toy_dataset, out, "--epochs", 1), capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "no space left on the device" in message, message
    assert "no resumable checkpoint was written yet: free some space, then run the same command again with " \
           "--overwrite" in message
    code, _, stderr = run_cli(_args(toy_dataset, out, "--epochs", 1), capsys)  # without it: refused, as advised
    assert code == 2 and "holds a run already" in stderr
    code, _, stderr = run_cli(_args(toy_dataset, out, "--epochs", 1, "--overwrite"), capsys)
    assert code == 0, stderr


def test_the_resolved_config_refuses_a_value_outside_its_choices():
    with pytest.raises(UserError, match="--prompts must be one of all, one, not 'some'"):
        resolve_config(TrainConfig(dataset="synthetic", prompts="some"))


def test_the_process_setup_of_train_and_eval_names_a_missing_gpu_in_one_line():
    from mbgf_cli import distributed
    from mbgf_cli.resources import available_devices

    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(UserError) as refused:
        distributed.setup(missing)
    assert str(refused.value) == f"--device {missing}: this machine has no such device; it has {', '.join(available_devices())}"
    assert distributed.setup("cpu").device == torch.device("cpu")


def _one_line_refusal(capsys, args) -> str:
    code, _, stderr = run_cli(args, capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    return " ".join(stderr.split())


def test_sizes_beyond_memory_are_refused_before_the_model_or_the_loaders(tmp_path, capsys):
    """issue 21: --frames/--input-size/--batch-size whose decoded batch alone exceeds memory is one line,
    before anything is built or created."""
    args = ["train", "--dataset", "synthetic", "--root", tmp_path / "data", "--model", "tiny", "--workers", "0",
            "--frames", "100000", "--input-size", "100000", "--output", tmp_path / "run"]
    message = _one_line_refusal(capsys, args)
    assert "--frames 100000" in message and "--input-size 100000" in message and "GiB" in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("model, expected", [
    ("foo", "--model 'foo': no such backbone; choose from b32, b16, l14, l14-336, tiny"),
    ("custom", "--model custom is a CLIP of any size, read from its weights: give --init CHECKPOINT or --pretrained"),
])
def test_a_model_the_registry_has_not_is_one_line_naming_the_backbones(tmp_path, capsys, model, expected):
    args = ["train", "--dataset", "synthetic", "--root", tmp_path / "data", "--model", model, "--workers", "0",
            "--output", tmp_path / "run"]
    assert expected in _one_line_refusal(capsys, args)
    assert not (tmp_path / "run").exists()


def test_the_model_help_lists_the_registrys_backbones():
    import fusion

    [model] = [f for f in dataclasses.fields(TrainConfig) if f.name == "model"]
    assert model.metadata["help"] == f"Backbone: {', '.join(fusion.BACKBONES)} (random init)."
    assert [name for name, backbone in fusion.BACKBONES.items() if backbone.small] == ["tiny"]
