"""Checkpoints: safetensors weights with JSON metadata, a training state that round-trips exactly,
atomic replacement, and one-line errors for what is not a checkpoint."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

import fusion
from mbgf_cli.checkpoint import (
    MODEL_FILE,
    STATE_JSON_FILE,
    load_checkpoint,
    load_train_state,
    read_meta,
    save_checkpoint,
)
from mbgf_cli.errors import UserError

CLASSES = ["moving something up", "moving something down", "something growing"]


def tiny(mbgf=True, variant="clip"):
    torch.manual_seed(0)
    return fusion.build_video_model(model="tiny", variant=variant, mbgf=mbgf, frames=4, input_size=32)


def meta_of(model, epoch=3):
    return {"config": model.config.to_dict(), "class_names": CLASSES, "epoch": epoch,
            "metrics": {"top1": 0.5, "top5": 1.0, "mean_class": 0.5}}


@pytest.mark.parametrize("variant", ["clip", "actionclip", "xclip"])
def test_model_and_metadata_round_trip(tmp_path, variant):
    model = tiny(variant=variant)
    with torch.no_grad():  # move the zero-initialised MBGF projections off zero, so they are really saved
        for p in model.mbgf.parameters():
            p.add_(0.01)
    save_checkpoint(tmp_path / "ckpt", model, meta_of(model))

    # The header metadata is JSON strings, readable by any safetensors tool.
    with safe_open(str(tmp_path / "ckpt" / MODEL_FILE), framework="pt") as f:
        header = f.metadata()
    assert json.loads(header["class_names"]) == CLASSES
    assert json.loads(header["config"])["variant"] == variant

    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["config"] == model.config.to_dict() and meta["class_names"] == CLASSES
    assert meta["epoch"] == 3 and meta["metrics"]["top1"] == 0.5
    assert loaded.config == model.config
    reference, restored = model.state_dict(), loaded.state_dict()
    assert reference.keys() == restored.keys()
    assert all(torch.equal(reference[k], restored[k]) for k in reference)
    clips, tokens = torch.randn(2, 4, 3, 32, 32), torch.randint(1, 400, (3, 8))
    tokens[:, -1] = 49407
    with torch.no_grad():
        assert torch.equal(model(clips, tokens), loaded(clips, tokens))


def test_train_state_round_trips_exactly(tmp_path):
    model = tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    clips, tokens = torch.randn(2, 4, 3, 32, 32), torch.randint(1, 400, (3, 8))
    tokens[:, -1] = 49407
    model.train()
    model(clips, tokens).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),  # integer keys, tensors, tuples (betas)
        "rng": [{"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}],
        "position": {"epoch": 1, "step": 4, "sums": {"loss": float("nan"), "steps": 4}},
        "best": None,
    }
    save_checkpoint(tmp_path / "last", model, meta_of(model), state)
    back = load_train_state(tmp_path / "last")

    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert back["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()  # ints, not strings
    for key, moments in state["optimizer"]["state"].items():
        assert all(torch.equal(moments[name], back["optimizer"]["state"][key][name]) for name in moments)
    assert torch.equal(back["rng"][0]["torch"], state["rng"][0]["torch"])
    random.setstate(back["rng"][0]["python"])  # accepted as is: tuples came back as tuples
    np.random.set_state(back["rng"][0]["numpy"])
    assert back["position"]["sums"]["loss"] != back["position"]["sums"]["loss"]  # NaN survives
    assert back["best"] is None

    # A fresh optimiser loaded from it takes the very same next step.
    twin, _ = load_checkpoint(tmp_path / "last")
    twin_optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-3, betas=(0.9, 0.98))
    twin_optimizer.load_state_dict(back["optimizer"])
    for m, opt in ((model, optimizer), (twin, twin_optimizer)):
        m.train()
        opt.zero_grad()
        torch.manual_seed(1)
        m(clips, tokens).sum().backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    # No pickle anywhere: the state is JSON plus safetensors.
    json.loads((tmp_path / "last" / STATE_JSON_FILE).read_text())


def test_saving_again_replaces_the_directory_atomically(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "last", model, meta_of(model, epoch=1), {"position": {"epoch": 1}})
    save_checkpoint(tmp_path / "last", model, meta_of(model, epoch=2), {"position": {"epoch": 2}})
    assert read_meta(tmp_path / "last")["epoch"] == 2
    assert load_train_state(tmp_path / "last")["position"]["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary or old copies left

    # A save that fails half-way leaves the previous checkpoint as it was.
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "last", model, meta_of(model, epoch=3), {"bad": object()})
    assert read_meta(tmp_path / "last")["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / MODEL_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "damaged")
    model = tiny()
    save_checkpoint(tmp_path / "weights_only", model, meta_of(model))
    with pytest.raises(UserError, match="no training state"):
        load_train_state(tmp_path / "weights_only")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    model = tiny(mbgf=True)
    meta = meta_of(model)
    meta["config"] = tiny(mbgf=False).config.to_dict()  # claims no MBGF, holds MBGF weights
    save_checkpoint(tmp_path / "ckpt", model, meta)
    with pytest.raises(UserError, match="unexpected weight"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_folder_holding_anything_but_a_checkpoint_is_never_replaced(tmp_path):
    model = torch.nn.Linear(2, 2)
    target = tmp_path / "best"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"best: holds notes.txt, not only a checkpoint's files.*nothing was changed"):
        save_checkpoint(target, model, {"config": {}})
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"file: is a file; a checkpoint is a folder"):
        save_checkpoint(tmp_path / "file", model, {"config": {}})
    assert (tmp_path / "file").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "file"]  # no staging folder left


def test_a_full_disk_says_what_is_intact_and_what_the_same_command_does(tmp_path, monkeypatch):
    """A fake ENOSPC in the first save (epoch 1: nothing to resume from) and in a later one."""
    import errno
    import os

    from mbgf_cli import checkpoint

    model = torch.nn.Linear(2, 2)
    real_write = checkpoint._write_file

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint, "_write_file", full)
    with pytest.raises(UserError) as first:
        save_checkpoint(tmp_path / "run" / "last", model, {"config": {}, "epoch": 1})
    message = str(first.value)
    assert message.startswith(f"{tmp_path}/run/last/model.safetensors: no space left on the device")
    assert "no last/ checkpoint was written yet" in message and "MiB free there" in message
    assert message.endswith("run the same command again with --overwrite: nothing was checkpointed yet, so it "
                            "starts again")
    monkeypatch.setattr(checkpoint, "_write_file", real_write)
    save_checkpoint(tmp_path / "run" / "last", model, {"config": {}, "epoch": 1})
    monkeypatch.setattr(checkpoint, "_write_file", full)
    with pytest.raises(UserError, match=r"previous last/ checkpoint is intact.*continues from the last checkpoint$"):
        save_checkpoint(tmp_path / "run" / "last", model, {"config": {}, "epoch": 2})
    assert read_meta(tmp_path / "run" / "last")["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last"]


def test_atomic_writes_get_the_users_umask_even_from_a_private_temporary(tmp_path):
    """A library that writes its file private (mkstemp's 0600) still yields the user's 0644."""
    import os
    import stat

    from mbgf_cli.fileio import atomic_output, atomic_write_text

    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "a")
        with atomic_output(tmp_path / "b.bin") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"b")
            os.close(fd)
        save_checkpoint(tmp_path / "ckpt", torch.nn.Linear(2, 2), {"config": {}})
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.txt", tmp_path / "b.bin", tmp_path / "ckpt" / MODEL_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o755


def test_a_full_disk_while_writing_a_file_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno
    import os

    from mbgf_cli.fileio import atomic_write_text

    atomic_write_text(tmp_path / "results.json", "old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError, match=r"results.json: no space left on the device while writing it \(the "
                                        r"previous version is intact; \d+ MiB free there\); free some space"):
        atomic_write_text(tmp_path / "results.json", "new")
    monkeypatch.undo()
    assert (tmp_path / "results.json").read_text() == "old" and len(list(tmp_path.iterdir())) == 1
