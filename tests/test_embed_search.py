"""``mbgf embed`` and ``mbgf search`` on generated videos: the stored vectors are the model's normalised
``encode_video`` of eval's clips, an interrupted run resumes into the identical file, a file made from
other inputs is not replaced, and search finds each class's videos by its name."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from fusion.prompts import class_text_tokens
from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.data import VideoDataset
from mbgf_cli.embeddings import parts_dir, read_embeddings
from mbgf_cli.inference import Predictor
from tests.predict_support import CLASS_NAMES, FRAMES, INPUT_SIZE, colour_checkpoint, colour_frames
from tests.test_train_support import run_cli
from tests.videos import write_text_as_video, write_video


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def embedded(colour, tmp_path_factory):
    """The colour videos embedded (views 2x1) with the class names as texts."""
    root, checkpoint = colour
    output = tmp_path_factory.mktemp("embedded") / "videos.safetensors"
    code, _, _ = run_cli(["embed", root / "val.txt", "-c", checkpoint, "-o", output, "--views", "2x1",
                          "--labels", root / "labels.csv", "--amp", "off", "--workers", "0"])
    assert code == 0
    return output


def search_json(capsys, *args) -> dict:
    code, stdout, stderr = run_cli(["search", *args, "--json"], capsys)
    assert code == 0, stderr
    return json.loads(stdout)


def test_embeddings_are_the_normalised_encode_video_of_evals_clips(colour, embedded):
    root, checkpoint = colour
    found = read_embeddings(embedded)
    assert found.videos == [str(root / "videos" / f"c{k}" / f"v{i}.mp4") for k in range(3) for i in range(3)]
    assert found.vectors.shape == (9, 128) and found.texts == CLASS_NAMES

    model, _ = load_checkpoint(checkpoint)
    dataset = VideoDataset(root, "val.txt", 3, frames=FRAMES, input_size=INPUT_SIZE, train=False, views=(2, 1))
    with torch.no_grad():
        for i in range(len(dataset)):
            views = F.normalize(model.encode_video(dataset[i][0]), dim=-1)  # the two clips of the video
            expected = F.normalize(views.mean(dim=0), dim=-1)
            assert torch.allclose(found.vectors[i], expected, atol=1e-5)
        text = F.normalize(model.encode_text(class_text_tokens(CLASS_NAMES, "all")).mean(dim=1), dim=-1)
    assert torch.allclose(found.text_vectors, text, atol=1e-5)
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(9), atol=1e-5)


def test_an_interrupted_embed_resumes_and_writes_the_identical_file(colour, tmp_path, capsys):
    root, checkpoint = colour
    folder = tmp_path / "videos"
    shutil.copytree(root / "videos", folder)
    write_text_as_video(folder / "c1" / "broken.mp4")  # 10 videos: 4 shards of 3, one of them unreadable
    args = ["embed", folder, "-c", checkpoint, "--shard-size", "3", "--batch-size", "2", "--workers", "0",
            "--texts", "something red, a dog"]

    code, _, _ = run_cli([*args, "-o", tmp_path / "whole.safetensors"], capsys)
    assert code == 0
    interrupted = tmp_path / "resumed.safetensors"
    code, _, _ = run_cli([*args, "-o", interrupted, "--stop-after-shards", "2"], capsys)
    assert code == 130 and not interrupted.exists()  # as after Ctrl-C: two shards written, no result
    parts = parts_dir(interrupted)
    assert sorted(p.name for p in parts.iterdir()) == ["run.json", "shard-00000.safetensors", "shard-00001.safetensors"]

    code, stdout, stderr = run_cli([*args, "-o", interrupted, "--json"], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["shards"], summary["resumed_shards"], summary["videos"]) == (4, 2, 9)  # 2 kept, 2 computed
    assert summary["skipped"] == [str(folder / "c1" / "broken.mp4")]
    assert interrupted.read_bytes() == (tmp_path / "whole.safetensors").read_bytes()
    assert not parts.exists()

    # Run again: nothing to do. Other inputs into the same file: refused, unless --overwrite.
    code, stdout, _ = run_cli([*args, "-o", interrupted], capsys)
    assert code == 0 and "up to date" in stdout
    code, _, stderr = run_cli(["embed", folder / "c0", "-c", checkpoint, "-o", interrupted, "--workers", "0"], capsys)
    assert code == 2 and "holds embeddings of other videos" in " ".join(stderr.split()) and "--overwrite" in stderr
    assert interrupted.read_bytes() == (tmp_path / "whole.safetensors").read_bytes()
    code, _, stderr = run_cli(["embed", folder / "c0", "-c", checkpoint, "-o", interrupted, "--workers", "0",
                               "--overwrite"], capsys)
    assert code == 0 and len(read_embeddings(interrupted).videos) == 3

    # A file that is not ours is never replaced without --overwrite.
    mine = tmp_path / "notes.safetensors"
    mine.write_text("my notes")
    code, _, stderr = run_cli(["embed", folder / "c0", "-c", checkpoint, "-o", mine, "--workers", "0"], capsys)
    assert code == 2 and "not an mbgf embeddings file" in stderr and mine.read_text() == "my notes"


def test_search_finds_each_class_by_its_name_with_predicts_scores(colour, embedded, capsys):
    root, checkpoint = colour
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    scores = predictor.predict(root / "val.txt", views=(2, 1), workers=0)
    scale = predictor.model.logit_scale.exp().item()
    for k, name in enumerate(CLASS_NAMES):
        out = search_json(capsys, embedded, name, "--top-k", "3", "--amp", "off")
        assert [r["rank"] for r in out["results"]] == [1, 2, 3]
        assert {r["video"] for r in out["results"]} == {str(root / "videos" / f"c{k}" / f"v{i}.mp4") for i in range(3)}
        # Cosine similarity to the class text: predict's logit of that class over the logit scale (one video's
        # views are averaged as unit vectors in embed, as logits in predict: equal up to the views' spread).
        for r in out["results"]:
            row = scores.videos.index(r["video"])
            assert r["similarity"] == pytest.approx(float(scores.logits[row, k]) / scale, abs=2e-3)


def test_search_like_a_video_of_the_file_or_a_new_one(colour, embedded, tmp_path, capsys, monkeypatch):
    root, checkpoint = colour
    stored = str(root / "videos" / "c2" / "v1.mp4")
    out = search_json(capsys, embedded, "--like", stored, "--top-k", "2")
    assert {r["video"] for r in out["results"]} == {str(root / "videos" / "c2" / f"v{i}.mp4") for i in (0, 2)}
    new = write_video(tmp_path / "new_green.mp4", frames=colour_frames(1, seed=99))
    out = search_json(capsys, embedded, "--like", new, "--top-k", "3")
    assert {r["video"] for r in out["results"]} == {str(root / "videos" / "c1" / f"v{i}.mp4") for i in range(3)}
    assert out["results"][0]["similarity"] > 0.9

    from mbgf_cli.console import console

    monkeypatch.setattr(console, "width", 400)  # the table folds a path at the terminal's width: room for it
    code, stdout, _ = run_cli(["search", embedded, "something blue", "-k", "1"], capsys)
    assert code == 0 and str(root / "videos" / "c2" / "v") in stdout and "similarity" in stdout
    code, _, stderr = run_cli(["search", embedded, "--like", tmp_path / "nothing.mp4"], capsys)
    assert code == 2 and "neither one of the videos" in stderr
    code, _, stderr = run_cli(["search", embedded], capsys)
    assert code == 2 and "--like VIDEO" in stderr


def test_search_needs_the_model_the_file_was_made_with(colour, tmp_path, capsys):
    root, checkpoint = colour
    moved = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, moved)
    output = tmp_path / "e.safetensors"
    code, _, _ = run_cli(["embed", root / "videos" / "c0", "-c", moved, "-o", output, "--workers", "0"], capsys)
    assert code == 0
    shutil.move(moved, tmp_path / "elsewhere")
    code, _, stderr = run_cli(["search", output, "something red"], capsys)
    assert code == 2 and "which is not there any more" in " ".join(stderr.split())
    out = search_json(capsys, output, "something red", "-c", tmp_path / "elsewhere")
    assert len(out["results"]) == 3

    # Another model (other text weights) is refused: its text embeddings would not match the videos'.
    other = tmp_path / "other"
    import fusion
    from mbgf_cli.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = fusion.build_video_model(model="tiny", variant="clip", mbgf=True, frames=FRAMES, input_size=INPUT_SIZE)
    save_checkpoint(other, model, {"config": model.config.to_dict(), "class_names": CLASS_NAMES, "epoch": 0,
                                   "metrics": {}, "train": {"prompts": "all"}})
    code, _, stderr = run_cli(["search", output, "something red", "-c", other], capsys)
    assert code == 2 and "not the model" in stderr
