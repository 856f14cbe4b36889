"""``mbgf predict`` and the Python API (``mbgf_cli.inference.Predictor``) on generated videos: the same
scores as ``mbgf eval``, free-text classes as computed by hand, zero-shot from a weights file, and
unreadable videos listed and counted."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import CLIP
from fusion.config import BACKBONES
from fusion.prompts import TEMPLATES
from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.data import VideoDataset
from mbgf_cli.inference import Predictor, collect_videos
from tests.predict_support import CLASS_NAMES, FRAMES, INPUT_SIZE, colour_checkpoint, colour_frames
from tests.test_train_support import run_cli
from tests.videos import write_empty, write_text_as_video, write_truncated, write_video


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory)


def predict_json(capsys, *args) -> dict:
    code, stdout, stderr = run_cli(["predict", *args, "--json"], capsys)
    assert code == 0, stderr
    return json.loads(stdout)


def test_predict_gives_evals_predictions_on_the_same_videos_and_views(colour, tmp_path, capsys):
    root, checkpoint = colour
    predictions = tmp_path / "eval.csv"
    code, stdout, stderr = run_cli(["eval", "--checkpoint", checkpoint, "--root", root, "--views", "2x3",
                                    "--workers", "0", "--predictions", predictions, "--json"], capsys)
    assert code == 0, stderr
    assert json.loads(stdout)["top1"] == 1.0  # the model has learnt the colours
    by_eval = {row["video"]: row for row in csv.DictReader(open(predictions))}

    # The same list through predict: the seed layout's relative paths are found under videos/.
    for workers in ("0", "2"):
        out = predict_json(capsys, root / "val.txt", "--checkpoint", checkpoint, "--views", "2x3", "--top-k", "3",
                           "--workers", workers, "--batch-size", "4")
        assert out["skipped"] == [] and len(out["videos"]) == 9
        for row in out["videos"]:
            expected = by_eval[Path(row["video"]).relative_to(root / "videos").as_posix()]
            top = row["top"][0]
            assert top["id"] == int(expected["predicted"]) and top["label"] == expected["predicted_name"]
            assert top["probability"] == pytest.approx(float(expected["probability"]), abs=2e-6)
            assert sum(r["probability"] for r in row["top"]) == pytest.approx(1.0, abs=1e-5)  # all 3 classes

    # The table and the accuracy against the list's labels.
    code, stdout, stderr = run_cli(["predict", root / "val.txt", "-c", checkpoint, "--workers", "0"], capsys)
    assert code == 0 and "something blue" in stdout and "c2/v1.mp4" in stdout
    assert "top-1 against the list's labels: 100.0% (9 of 9)" in stderr


def test_free_text_classes_give_the_logits_of_their_prompts_computed_by_hand(colour, capsys):
    root, checkpoint = colour
    names = ["juggling balls", "riding a bike", "something red"]
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    result = predictor.predict(root / "val.txt", names, workers=0)
    assert result.class_names == names and len(result.videos) == 9

    # By hand: every class name in every template (the checkpoint was trained with all of them), the text
    # features averaged over templates, cosine similarity times the logit scale, on eval's own clips.
    model, _ = load_checkpoint(checkpoint)
    tokens = clip.tokenize([t.format(n) for n in names for t in TEMPLATES]).view(len(names), len(TEMPLATES), -1)
    dataset = VideoDataset(root, "val.txt", len(CLASS_NAMES), frames=FRAMES, input_size=INPUT_SIZE, train=False)
    with torch.no_grad():
        text = model.encode_text(tokens).mean(dim=1)
        clips = torch.stack([dataset[i][0][0] for i in range(len(dataset))])
        video = model.encode_video(clips)
        expected = model.logit_scale.exp() * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).T
    assert torch.allclose(result.logits, expected, atol=1e-4)
    assert torch.allclose(result.probs, expected.softmax(dim=-1), atol=1e-5)

    # The CLI with --classes: the same probabilities.
    out = predict_json(capsys, root / "val.txt", "-c", checkpoint, "--classes", ", ".join(names), "--amp", "off",
                       "--workers", "0", "--top-k", "1")
    assert [row["top"][0]["probability"] for row in out["videos"]] == \
        pytest.approx(expected.softmax(dim=-1).max(dim=1).values.tolist(), abs=1e-5)


def test_classes_from_a_labels_file_of_either_form(colour, tmp_path, capsys):
    root, checkpoint = colour
    one_a_line = tmp_path / "names.txt"
    one_a_line.write_text("something blue\nsomething red\n")
    out = predict_json(capsys, root / "videos" / "c0", "-c", checkpoint, "--labels", one_a_line, "--workers", "0")
    assert [row["top"][0]["label"] for row in out["videos"]] == ["something red"] * 3
    assert [row["top"][0]["id"] for row in out["videos"]] == [1] * 3
    out = predict_json(capsys, root / "videos" / "c2" / "v0.mp4", "-c", checkpoint, "--labels", root / "labels.csv",
                       "--workers", "0")
    assert out["videos"][0]["top"][0]["label"] == "something blue"


def test_zero_shot_from_a_random_openai_format_file(tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "ViT-tiny.pt"
    config = BACKBONES["tiny"].clip_config.__class__(**{**BACKBONES["tiny"].clip_config.__dict__, "image_resolution": 32})
    torch.save(CLIP(config).state_dict(), weights)  # an OpenAI-format state dict, as torch.save writes it
    for k in range(2):
        write_video(tmp_path / "videos" / f"v{k}.mp4", frames=colour_frames(k, seed=k))
    args = ["--pretrained", weights, "--model", "tiny", "--frames", "2", "--input-size", "32", "--workers", "0"]
    out = predict_json(capsys, tmp_path / "videos", *args, "--classes", "a cat, a dog, a bird", "--amp", "off")
    assert [row["video"] for row in out["videos"]] == [str(tmp_path / "videos" / f"v{k}.mp4") for k in range(2)]
    expected = Predictor.from_pretrained(weights, model="tiny", frames=2, input_size=32, amp="off").predict(
        tmp_path / "videos", ["a cat", "a dog", "a bird"], workers=0)
    for row, probs in zip(out["videos"], expected.probs, strict=True):
        assert len(row["top"]) == 3 and sum(r["probability"] for r in row["top"]) == pytest.approx(1.0, abs=1e-5)
        assert row["top"][0]["probability"] == pytest.approx(float(probs.max()), abs=1e-6)

    # CLIP alone has no classes of its own, and no MBGF gates to explain.
    code, _, stderr = run_cli(["predict", tmp_path / "videos", *args], capsys)
    assert code == 2 and "carries no class names" in stderr and "--classes" in stderr
    code, _, stderr = run_cli(["predict", tmp_path / "videos", *args, "--classes", "a, b", "--explain"], capsys)
    assert code == 2 and "--explain needs an MBGF model" in stderr and "Traceback" not in stderr


def test_broken_and_missing_videos_are_listed_and_counted(colour, tmp_path, capsys):
    root, checkpoint = colour
    folder = tmp_path / "mine"
    shutil.copytree(root / "videos" / "c1", folder / "good")
    write_text_as_video(folder / "broken" / "error_page.webm")
    write_empty(folder / "broken" / "empty.avi")
    write_truncated(folder / "broken" / "cut.mp4")  # its index was at the end: it does not open
    (folder / "notes.md").write_text("not a video, not collected\n")
    missing = tmp_path / "missing.mp4"
    csv_file = tmp_path / "out" / "predictions.csv"

    out = predict_json(capsys, folder, missing, "-c", checkpoint, "--workers", "0", "--batch-size", "2",
                       "--top-k", "2", "--csv", csv_file)
    assert [row["video"] for row in out["videos"]] == [str(folder / "good" / f"v{i}.mp4") for i in range(3)]
    assert all(row["top"][0]["label"] == "something green" for row in out["videos"])
    assert out["skipped"] == [str(folder / "broken" / name) for name in ("cut.mp4", "empty.avi", "error_page.webm")] \
        + [str(missing)]
    rows = list(csv.DictReader(open(csv_file)))
    assert [(r["rank"], r["label"]) for r in rows[:2]] == [("1", "something green"), ("2", rows[1]["label"])]
    assert len(rows) == 3 * 2 and set(rows[0]) == {"video", "rank", "id", "label", "probability"}

    code, stdout, stderr = run_cli(["predict", folder, missing, "-c", checkpoint, "--workers", "0"], capsys)
    assert code == 0 and "4 video(s) skipped" in " ".join(stderr.split()) and "missing.mp4 (missing)" in stderr

    # --strict stops at the first one, naming it; a missing path is refused before anything runs.
    code, stdout, stderr = run_cli(["predict", folder, "-c", checkpoint, "--workers", "0", "--strict"], capsys)
    assert code == 2 and "cut.mp4: cannot read video" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(["predict", missing, "-c", checkpoint, "--strict"], capsys)
    assert code == 2 and f"{missing}: no such file" in stderr
    code, _, stderr = run_cli(["predict", missing, "-c", checkpoint], capsys)  # nothing at all to run on
    assert code == 2 and "no such file (nothing to run on)" in " ".join(stderr.split())


def test_explain_gives_the_mbgf_gate_of_each_video(colour, capsys):
    root, checkpoint = colour
    out = predict_json(capsys, root / "videos" / "c0", "-c", checkpoint, "--explain", "--workers", "0")
    for row in out["videos"]:
        assert set(row["gates"]) == {"appearance", "temporal", "motion"}
        assert sum(row["gates"].values()) == pytest.approx(1.0, abs=1e-5)


def test_inputs_folders_lists_and_option_errors(colour, tmp_path, capsys):
    root, checkpoint = colour
    listed = tmp_path / "list.txt"
    listed.write_text(f"# mine\n{root / 'videos' / 'c0' / 'v1.mp4'} 0\n{root / 'videos' / 'c2' / 'v0.mp4'}\n")
    found = collect_videos([root / "videos" / "c1", listed, root / "videos" / "c1" / "v0.mp4"])
    assert found.videos == [str(root / "videos" / "c1" / f"v{i}.mp4") for i in range(3)] + \
        [str(root / "videos" / "c0" / "v1.mp4"), str(root / "videos" / "c2" / "v0.mp4")]  # the repeat kept once
    assert found.labels == [None, None, None, 0, None]

    for args, message in ((["--views", "4by3"], "expected CLIPSxCROPS"),
                          (["--classes", " , "], "--classes: no names given"),
                          (["--classes", "a, a"], "'a' is given twice"),
                          (["--classes", "a", "--labels", root / "labels.csv"], "either --classes or --labels"),
                          (["--pretrained", "ViT-B/16"], "either --checkpoint or --pretrained")):
        code, _, stderr = run_cli(["predict", root / "videos", "-c", checkpoint, *args], capsys)
        assert code == 2 and message in stderr, (args, stderr)
    code, _, stderr = run_cli(["predict", tmp_path, "-c", checkpoint], capsys)
    assert code == 2 and "no videos found" in stderr


def test_thread_sharing_switched_off_keeps_every_thread(monkeypatch):
    from mbgf_cli import heuristics

    monkeypatch.setattr(heuristics, "available_cpus", lambda: 4)
    monkeypatch.setenv(heuristics.THREAD_SHARE, "0")
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        share = heuristics.ThreadShare(workers=2)
        share.update(waited=0.5, worked=1.0)  # the decoders are the bottleneck, but the rule is off
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_the_model_takes_every_core_only_while_the_decoders_are_ahead(monkeypatch):
    from mbgf_cli import heuristics

    monkeypatch.setattr(heuristics, "available_cpus", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        share = heuristics.ThreadShare(workers=2)
        assert torch.get_num_threads() == 2  # at the start the decoders fill their cores
        share.update(waited=0.001, worked=1.0)  # the batch was ready: the decoders are ahead
        assert torch.get_num_threads() == 4
        share.update(waited=0.05, worked=1.0)  # between the thresholds: no change
        assert torch.get_num_threads() == 4
        share.update(waited=0.5, worked=1.0)  # the model waited: the decoders are the bottleneck
        assert torch.get_num_threads() == 2
        share.update(waited=0.05, worked=1.0)
        assert torch.get_num_threads() == 2
        share.restore()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_default_workers_leave_a_cpu_model_cores_of_its_own():
    from mbgf_cli.inference import default_workers

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert default_workers("cpu") == 1 and default_workers("cuda") == 2
        torch.set_num_threads(16)
        assert default_workers("cpu") == 4 and default_workers("cuda") == 4
        torch.set_num_threads(1)
        assert default_workers("cpu") == 1 and default_workers("cuda") == 1
    finally:
        torch.set_num_threads(before)
