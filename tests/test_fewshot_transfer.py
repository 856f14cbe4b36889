"""The transfer recipe of the README: `mbgf train --dataset ucf101 --init CHECKPOINT` fine-tunes a model
trained on other classes (here a tiny one on 12 synthetic classes) on UCF101's 101 classes."""

import json

import pytest
import torch

import fusion
from mbgf_cli import app as app_module
from mbgf_cli import checkpoint, training
from mbgf_cli.data import synthetic
from tests.videos import write_video


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory):
    base = tmp_path_factory.mktemp("transfer")
    synthetic.generate(base / "set_a", class_set="a", videos_per_class=2, val_fraction=0.5, frames=8, size=48,
                       seed=0, show_progress=False, workers=1)
    training.train(training.TrainConfig(dataset="synthetic", root=str(base / "set_a"), model="tiny", frames=4,
                                        input_size=48, epochs=1, batch_size=4, total_batch=4, workers=0,
                                        out=str(base / "source"), plot=False))
    return base / "source" / "best"


def test_transfer_to_ucf101_from_a_checkpoint_of_other_classes(source_checkpoint, tmp_path, capsys):
    # A stand-in for `mbgf prepare-data ucf101 --split 1`: UCF101's 101 class names (the preset's list),
    # a train and a val video for a few of them (few clips keep the test quick; the text side has 101).
    root = tmp_path / "ucf101"
    train, val = [], []
    for k in range(0, 101, 7):
        for part, lines in (("train", train), ("val", val)):
            write_video(root / "videos" / f"c{k}_{part}.mp4", num_frames=4, size=(48, 48))
            lines.append(f"c{k}_{part}.mp4 {k}\n")
    (root / "train.txt").write_text("".join(train))
    (root / "val.txt").write_text("".join(val))

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["train", "--dataset", "ucf101", "--root", str(root), "--init", str(source_checkpoint),
                         "--frames", "4", "--epochs", "1", "--batch-size", "5", "--total-batch", "5", "--workers",
                         "0", "--mixup", "0", "--cutmix", "0", "--prompts", "one", "--out", str(out), "--no-plot"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["videos"] == 15

    model, meta = checkpoint.load_checkpoint(out / "last")
    source, source_meta = checkpoint.load_checkpoint(source_checkpoint)
    assert len(meta["class_names"]) == 101 and meta["class_names"][0] != source_meta["class_names"][0]
    assert meta["config"] == source_meta["config"]  # the same architecture: the checkpoint's
    # It started from the checkpoint (not from scratch): the weights moved only a little from it.
    moved = [(model.state_dict()[k] - v).abs().max().item() for k, v in source.state_dict().items()
             if v.is_floating_point()]
    torch.manual_seed(1234)  # not the source's seed, whose init it is still near after a few steps
    fresh = fusion.build_from_config(fusion.VideoModelConfig.from_dict(source_meta["config"]))  # from scratch
    far = [(fresh.state_dict()[k] - v).abs().max().item() for k, v in source.state_dict().items()
           if v.is_floating_point()]
    assert max(moved) < 0.05 < max(far)
