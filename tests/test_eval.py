"""``mbgf eval``: multi-view scoring and counting, skipped videos, outputs, and refusing other classes."""

import csv
import json
import shutil

import pytest
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli.checkpoint import save_checkpoint
from mbgf_cli.data import VideoDataset, build_loader, read_labels
from mbgf_cli.evaluation import EvalResult, evaluate_loader
from tests.test_train_support import run_cli
from tests.videos import write_text_as_video


@pytest.fixture(scope="module")
def untrained_checkpoint(toy_dataset, tmp_path_factory):
    """A tiny MBGF model as built (no training), saved with the toy dataset's classes."""
    torch.manual_seed(0)
    model = fusion.build_video_model(model="tiny", variant="clip", mbgf=True, frames=4, input_size=32)
    directory = tmp_path_factory.mktemp("ckpt") / "untrained"
    save_checkpoint(directory, model, {"config": model.config.to_dict(),
                                       "class_names": read_labels(toy_dataset / "labels.csv"), "epoch": 0,
                                       "metrics": {}, "train": {"prompts": "one"}})
    return directory, model


def test_metrics_known_answer():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3], [0.0, 0.0, 0.0]])
    result = EvalResult(probs=probs, labels=torch.tensor([0, 2, 2, 1, 1]),
                        evaluated=torch.tensor([True, True, True, True, False]))
    assert result.videos == 4 and result.skipped == 1
    assert result.top1 == pytest.approx(3 / 4)  # videos 0, 2, 3 right; 1 wrong; 4 skipped, not counted
    accuracy, counts = result.per_class()
    assert counts.tolist() == [1, 1, 2] and accuracy.tolist() == [1.0, 1.0, 0.5]
    assert result.mean_class == pytest.approx((1 + 1 + 0.5) / 3)
    assert result.top5 == 1.0  # K = 3: every label is in the top 3
    assert result.confusion().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_multi_view_scores_average_the_softmax_of_every_view(toy_dataset, untrained_checkpoint):
    _, model = untrained_checkpoint
    names = read_labels(toy_dataset / "labels.csv")
    tokens = class_text_tokens(names, "one")
    dataset = VideoDataset(toy_dataset, "val.txt", len(names), frames=4, input_size=32, train=False, views=(2, 3))
    loader = build_loader(dataset, batch_size=5, workers=0, shuffle=False)
    result = evaluate_loader(model, loader, tokens, len(dataset), [label for _, label in dataset.samples], "cpu")
    assert result.videos == len(dataset) == 12 and result.skipped == 0
    assert torch.allclose(result.probs.sum(dim=1), torch.ones(12))
    for index in (0, 7, 11):
        views, label, _ = dataset[index]
        assert views.shape[:2] == (6, 4)  # 2 clips x 3 crops, 4 frames each
        with torch.no_grad():
            expected = model(views, tokens).softmax(dim=-1).mean(dim=0)
        assert torch.allclose(result.probs[index], expected, atol=1e-5)


def test_eval_command_counts_views_skips_broken_videos_and_writes_outputs(toy_dataset, untrained_checkpoint,
                                                                          tmp_path, capsys):
    directory, _ = untrained_checkpoint
    # A copy of the dataset whose val list also holds a broken video.
    root = tmp_path / "data"
    shutil.copytree(toy_dataset, root)
    write_text_as_video(root / "videos" / "broken.mp4")
    with open(root / "val.txt", "a") as f:
        f.write("broken.mp4 3\n")
    predictions = tmp_path / "predictions.csv"
    code, stdout, stderr = run_cli(["eval", "--checkpoint", directory, "--root", root, "--views", "2x3",
                                    "--workers", "0", "--json", "--per-class", "--predictions", predictions], capsys)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert (result["videos"], result["skipped"], result["views"]) == (12, 1, "2x3")
    assert sum(c["videos"] for c in result["per_class"].values()) == 12
    rows = list(csv.DictReader(open(predictions)))
    assert len(rows) == 13
    assert [r["status"] for r in rows].count("skipped") == 1
    assert next(r for r in rows if r["status"] == "skipped")["video"] == "broken.mp4"
    assert (tmp_path / "skipped.txt").read_text().startswith("broken.mp4\t")  # the list, next to the predictions
    correct = sum(int(r["correct"]) for r in rows if r["status"] == "ok")
    assert correct / 12 == pytest.approx(result["top1"])


def test_explain_reports_gate_weights_per_class(toy_dataset, untrained_checkpoint, capsys):
    directory, _ = untrained_checkpoint
    code, stdout, stderr = run_cli(["eval", "--checkpoint", directory, "--root", toy_dataset, "--workers", "0",
                                    "--explain", "--json"], capsys)
    assert code == 0, stderr
    gates = json.loads(stdout)["gates"]
    assert len(gates) == 12
    for row in gates.values():
        assert set(row) == {"appearance", "temporal", "motion"}
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)  # a softmax gate, averaged


def test_a_checkpoint_trained_on_other_classes_is_refused(toy_dataset, untrained_checkpoint, tmp_path, capsys):
    directory, _ = untrained_checkpoint
    labels = tmp_path / "other_labels.csv"
    names = read_labels(toy_dataset / "labels.csv")
    names[3] = "juggling"
    labels.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    code, stdout, stderr = run_cli(["eval", "--checkpoint", directory, "--root", toy_dataset, "--labels", labels,
                                    "--workers", "0"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and stdout == ""
    assert "classes differ from the dataset's" in message
    assert "class 3 is 'moving something down' in the checkpoint but 'juggling'" in message


def test_bad_views_option_is_a_clear_error(toy_dataset, untrained_checkpoint, capsys):
    directory, _ = untrained_checkpoint
    code, _, stderr = run_cli(["eval", "--checkpoint", directory, "--root", toy_dataset, "--views", "4by3"], capsys)
    assert code == 2 and "expected CLIPSxCROPS" in stderr
