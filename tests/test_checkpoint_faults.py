"""Checkpoints under faults (issue 15 items 8 and 10, issue 14's step checkpoints): a writer killed at
any moment leaves the previous checkpoint loadable and only its own temporaries behind, which the next
start removes; a full disk names the file and says the previous checkpoint is intact; settings edited
by hand are named in one line; a pickle that tries to run code is refused without advice to run it."""

import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mbgf_cli import run_folder
from mbgf_cli.checkpoint import (
    MODEL_FILE,
    load_checkpoint,
    load_train_state,
    load_weights,
    read_meta,
    save_checkpoint,
)
from mbgf_cli.errors import UserError
from mbgf_cli.fileio import staging_sibling
from tests.test_train_support import TINY_RUN, run_cli


def _model():
    return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.Linear(1024, 256))


def _save_version(directory, model, version: int) -> None:
    """A checkpoint whose every part says which save it is: weights, metadata and training state."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(version)
    state = {"position": {"epoch": version, "step": 0, "iteration": version},
             "moments": torch.full((512, 512), float(version))}
    save_checkpoint(directory, model, {"config": {}, "epoch": version}, state)


def _write_forever(directory, first: int) -> None:
    torch.set_num_threads(1)
    model = _model()
    version = first
    while True:
        _save_version(directory, model, version)
        version += 1


def _check_whole(directory) -> int:
    """The checkpoint loads, and weights, metadata and state all come from the same save."""
    version = read_meta(directory)["epoch"]
    model = _model()
    load_weights(model, directory)
    assert all(bool((p == version).all()) for p in model.parameters())
    state = load_train_state(directory)
    assert state["position"]["iteration"] == version
    assert bool((state["moments"] == version).all())
    return version


def test_a_writer_killed_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path):
    """24 SIGKILLs at random moments of saving last/ and step/ (alternately, as a run does)."""
    run = tmp_path / "run"
    for name in ("last", "step"):
        _save_version(run / name, _model(), 1)
    (run / "notes.txt").write_text("mine")
    rng = random.Random(0)
    context = multiprocessing.get_context("fork")  # a fork costs milliseconds, an interpreter start seconds
    killed_mid_write, versions = 0, {"last": [1], "step": [1]}
    for kill in range(24):
        name = ("last", "step")[kill % 2]
        writer = context.Process(target=_write_forever, args=(run / name, versions[name][-1] + 1), daemon=True)
        writer.start()
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        versions[name].append(_check_whole(run / name))
        killed_mid_write += bool(run_folder.stale_temporaries(run))
    for name, seen in versions.items():
        assert seen == sorted(seen), name  # a kill never brings back an older checkpoint
        assert seen[-1] > 2, name  # the writers did replace it, many times
    assert killed_mid_write > 0  # some kills did land in the middle of a write
    run_folder.remove_stale_temporaries(run)  # what the next start of the run does
    assert sorted(p.name for p in run.iterdir()) == ["last", "notes.txt", "step"]
    _check_whole(run / "last")
    _check_whole(run / "step")


def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(tmp_path):
    """A real full file system (a 600 kB tmpfs in a private mount namespace): the first checkpoint
    fits, the second (larger) does not."""
    script = textwrap.dedent("""
        import json, sys, torch
        from mbgf_cli.checkpoint import save_checkpoint, load_train_state, read_meta
        from mbgf_cli.errors import UserError
        from mbgf_cli import run_folder
        target = sys.argv[1] + "/run/last"
        small = torch.nn.Linear(64, 64)
        save_checkpoint(target, small, {"config": {}, "epoch": 1}, {"position": {"iteration": 1}})
        big = torch.nn.Linear(512, 512)  # 1 MB: does not fit
        try:
            save_checkpoint(target, big, {"config": {}, "epoch": 2}, {"position": {"iteration": 2}})
            message = None
        except UserError as e:
            message = str(e)
        print(json.dumps({"message": message, "epoch": read_meta(target)["epoch"],
                           "iteration": load_train_state(target)["position"]["iteration"],
                           "leftovers": [p.name for p in run_folder.stale_temporaries(sys.argv[1] + "/run")]}))
    """)
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["unshare", "-Urm", "sh", "-c",
               f'mount -t tmpfs -o size=600k tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"', "sh",
               str(mount), script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    message = result["message"]
    assert message is not None and "no space left on the device" in message
    assert message.startswith(f"{mount}/run/last/model.safetensors:")
    assert "the previous last/ checkpoint is intact" in message
    assert (result["epoch"], result["iteration"]) == (1, 1)
    assert result["leftovers"] == []


def test_a_staging_directory_is_what_the_run_folder_calls_a_stale_temporary(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    names = [staging_sibling(run / n).name for n in ("last", "best", "step")]
    for name in names:
        (run / name).mkdir()
    assert sorted(p.name for p in run_folder.stale_temporaries(run)) == sorted(names)


def _tiny_checkpoint(directory):
    import fusion

    torch.manual_seed(0)
    model = fusion.build_video_model(model="tiny", variant="xclip", mbgf=True, frames=4, input_size=32)
    save_checkpoint(directory, model, {"config": model.config.to_dict(), "class_names": ["a", "b"], "epoch": 1})


def _edit_settings(directory, **changes):
    """What a user editing the settings does: rewrite the file with safetensors, config changed."""
    path = str(directory / MODEL_FILE)
    with safe_open(path, framework="pt") as f:
        header = f.metadata()
    tensors = load_file(path)
    config = json.loads(header["config"])
    config.update(changes)
    save_file(tensors, path, metadata={**header, "config": json.dumps(config)})


@pytest.mark.parametrize("changes", [{"frames": 8}, {"input_size": 64}, {"model": "b16"}],
                         ids=["frames", "input-size", "backbone"])
def test_hand_edited_settings_name_the_key_and_both_shapes_in_one_short_line(tmp_path, changes):
    import fusion

    _tiny_checkpoint(tmp_path / "ckpt")
    _edit_settings(tmp_path / "ckpt", **changes)
    with pytest.raises(UserError) as raised:
        load_checkpoint(tmp_path / "ckpt")
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400
    named = re.search(r"weight (\S+) has shape \[([\d, ]+)\] in the file, but the model its settings describe "
                      r"expects \[([\d, ]+)\]", message)
    assert named, message
    key, found, expected = named.groups()
    config = {**read_meta(tmp_path / "ckpt")["config"]}
    edited_model = fusion.build_video_model(**config)
    assert list(load_file(str(tmp_path / "ckpt" / MODEL_FILE))[key].shape) == [int(n) for n in found.split(",")]
    assert list(edited_model.state_dict()[key].shape) == [int(n) for n in expected.split(",")]


def test_hand_edited_settings_through_the_cli_are_one_line_and_exit_2(tmp_path, toy_dataset, capsys):
    _tiny_checkpoint(tmp_path / "ckpt")
    _edit_settings(tmp_path / "ckpt", model="b16")
    code, _, stderr = run_cli(["eval", "--checkpoint", tmp_path / "ckpt", "--dataset", "synthetic", "--root",
                               toy_dataset], capsys)
    assert code == 2
    assert "Traceback" not in stderr and "RuntimeError" not in stderr
    message = " ".join(stderr.split())
    assert len(stderr) < 600 and re.search(r"weight \S+ has shape \[[\d, ]+\] in the file, but", message)


def test_a_pretrained_file_that_tries_to_run_code_is_refused_without_advice_to_run_it(tmp_path, toy_dataset,
                                                                                      capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil = tmp_path / "ViT-B-16.pt"
    torch.save({"visual.proj": Payload()}, evil)
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN, "--pretrained",
                               evil, "--out", tmp_path / "run"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Traceback" not in stderr
    assert "refusing to call" in message and "system" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert not (tmp_path / "ran").exists()


def test_removing_stale_temporaries_spares_everything_else(tmp_path):
    from mbgf_cli.fileio import temporary_sibling

    run = tmp_path / "run"
    run.mkdir()
    ours = [staging_sibling(run / "last"), temporary_sibling(run / "config.json"),
            temporary_sibling(run / "metrics.jsonl"), run / ".summary.json.tmp"]
    for path in ours:
        path.mkdir() if path.name.startswith(".last") else path.write_text("partial")
    theirs = [run / ".last.tmp-notes", run / ".data.csv.tmp-1-abcdef", run / "last.tmp-12345678",
              run / ".config.json.tmp-x", run / "my.tmp"]
    for path in theirs:
        path.write_text("the user's")
    removed = run_folder.remove_stale_temporaries(run)
    assert sorted(removed) == sorted(ours)
    assert sorted(run.iterdir()) == sorted(theirs)
    shutil.rmtree(run)
