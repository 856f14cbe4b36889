"""``mbgf export --format onnx`` and ``mbgf predict --checkpoint model.onnx``, against onnxruntime (the
real consumer of the files): the exported graph gives mbgf's logits, gates and video features for clip,
actionclip and xclip, each with and without MBGF, at another batch size than it was exported with; the
free-text pair (text encoder + video graph that takes text features) gives X-CLIP's video-specific
prompts; predict's JSON through onnxruntime equals predict's JSON through torch on generated videos;
and an existing file is never replaced unless mbgf wrote it and --overwrite says so."""

import json

import numpy as np
import onnxruntime
import pytest
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli.checkpoint import save_checkpoint
from mbgf_cli.inference import Predictor
from mbgf_cli.interop.onnx import CONTEXT_LENGTH, check_onnx_output, text_file_for
from tests.predict_support import CLASS_NAMES, colour_checkpoint
from tests.test_train_support import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NAMES = ["juggling balls", "riding a bike", "a dog barking", "somebody cooking"]
FRAMES, SIZE = 4, 32


def session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_close(got: np.ndarray, expected: torch.Tensor, relative: float = 1e-4):
    expected = expected.detach().float().numpy()
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= relative * scale, (got, expected)


def tiny_checkpoint(directory, variant: str, mbgf: bool, template_eval: str = "mean_text"):
    """A random tiny model saved as a checkpoint with NAMES; MBGF's zero-initialised projections and
    uniform gate are given weights, so that MBGF changes the embedding (and a graph without it fails)."""
    torch.manual_seed(1)
    model = fusion.build_video_model(model="tiny", variant=variant, mbgf=mbgf, frames=FRAMES, input_size=SIZE,
                                     template_eval=template_eval,
                                     test_logit_scale=100.0 if template_eval == "mean_softmax" else None)
    if mbgf:
        with torch.no_grad():
            for weight in (model.mbgf.temporal_proj.weight, model.mbgf.motion_proj.weight, model.mbgf.gate.out.weight):
                weight.normal_(std=0.3)
    model.eval()
    save_checkpoint(directory, model, {"config": model.config.to_dict(), "class_names": NAMES, "epoch": 3,
                                       "metrics": {}, "train": {"prompts": "all"}})
    return model


# ActionCLIP without MBGF is tested the way ActionCLIP tests (softmax per template, averaged; scale 100).
CASES = [("clip", True, "mean_text"), ("clip", False, "mean_text"), ("actionclip", True, "mean_text"),
         ("actionclip", False, "mean_softmax"), ("xclip", True, "mean_text"), ("xclip", False, "mean_text")]


@pytest.mark.parametrize("variant, mbgf, template_eval", CASES)
def test_the_exported_graph_gives_mbgfs_logits_in_onnxruntime(tmp_path, capsys, variant, mbgf, template_eval):
    model = tiny_checkpoint(tmp_path / "ckpt", variant, mbgf, template_eval)
    # README: mbgf export runs/synthetic-tiny-clip-mbgf/best --format onnx -o model.onnx
    code, stdout, stderr = run_cli(["export", tmp_path / "ckpt", "--format", "onnx", "-o", tmp_path / "model.onnx"],
                                   capsys)
    assert code == 0, stderr
    assert f"{tmp_path / 'model.onnx'}" in stdout and "4 classes" in stdout

    graph = session(tmp_path / "model.onnx")
    meta = graph.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == NAMES and json.loads(meta["variant"]) == variant
    assert json.loads(meta["frames"]) == FRAMES and json.loads(meta["input_size"]) == SIZE
    assert json.loads(meta["input_mean"]) == list(model.config.input_mean)
    assert json.loads(meta["prompts"]) == "all" and json.loads(meta["mbgf_fusion"]) is mbgf
    assert [i.name for i in graph.get_inputs()] == ["video"]

    torch.manual_seed(2)
    clips = torch.randn(3, FRAMES, 3, SIZE, SIZE)  # exported with a batch of 2
    with torch.no_grad():
        logits, details = model(clips, class_text_tokens(NAMES, "all"), return_details=True)
    outputs = dict(zip([o.name for o in graph.get_outputs()], graph.run(None, {"video": clips.numpy()}), strict=True))
    assert_close(outputs["logits"], logits)
    assert_close(outputs["video_features"], details["video_features"])
    if mbgf:
        assert_close(outputs["gates"], details["gates"])
        # the test can fail: MBGF moves the embedding away from its base, and the gate is not uniform
        base = details["appearance"] if variant == "clip" else details["temporal"]
        assert (details["video_features"] - base).abs().max() > 1e-2 * base.abs().max()
        assert (details["gates"] - 1 / 3).abs().max() > 1e-3
    else:
        assert "gates" not in outputs


def test_free_text_files_give_xclips_video_specific_prompts(tmp_path, capsys):
    model = tiny_checkpoint(tmp_path / "ckpt", "xclip", True)
    output = tmp_path / "deploy" / "xclip.onnx"
    # README: mbgf export runs/synthetic-tiny-clip-mbgf/best --format onnx -o free-text.onnx --free-text
    code, stdout, stderr = run_cli(["export", tmp_path / "ckpt", "--format", "onnx", "-o", output, "--free-text"],
                                   capsys)
    assert code == 0, stderr
    assert text_file_for(output) == tmp_path / "deploy" / "xclip.text.onnx" and "free-text classes" in stdout

    names = ["a cat on a sofa", "people dancing", "x", "cutting vegetables", "a red car"]  # exported with 3
    tokens = class_text_tokens(names, "all")  # [K, P, L]
    padded = torch.nn.functional.pad(tokens, (0, CONTEXT_LENGTH - tokens.shape[-1])).view(-1, CONTEXT_LENGTH)
    text_features, text_embeddings = session(text_file_for(output)).run(None, {"tokens": padded.numpy()})
    with torch.no_grad():
        expected_text = model.encode_text(tokens)
    assert_close(text_features.reshape(expected_text.shape), expected_text)
    assert np.allclose(np.linalg.norm(text_embeddings, axis=1), 1, atol=1e-5)

    graph = session(output)
    assert json.loads(graph.get_modelmeta().custom_metadata_map["class_names"]) == []
    for batch in (1, 3):
        clips = torch.randn(batch, FRAMES, 3, SIZE, SIZE)
        with torch.no_grad():
            logits = model(clips, tokens)
        ensemble = text_features.reshape(len(names), -1, text_features.shape[-1]).mean(axis=1)  # mean_text
        got = graph.run(["logits"], {"video": clips.numpy(), "text_features": ensemble})[0]
        assert_close(got, logits)


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory):
    """The colour videos, their torch checkpoint, and its ONNX exports (baked classes; free text)."""
    root, checkpoint = colour_checkpoint(tmp_path_factory)
    folder = tmp_path_factory.mktemp("onnx")
    for extra in ([], ["--free-text"]):
        name = "free.onnx" if extra else "model.onnx"
        code, _, stderr = run_cli(["export", checkpoint, "--format", "onnx", "-o", folder / name, *extra], None)
        assert code == 0, stderr
    return root, checkpoint, folder / "model.onnx", folder / "free.onnx"


def predict_json(capsys, *args) -> dict:
    # The ONNX files are fp32: torch runs at fp32 too (--amp auto would take bf16 on a CPU that has it).
    code, stdout, stderr = run_cli(["predict", *args, "--amp", "off", "--json"], capsys)
    assert code == 0, stderr
    return json.loads(stdout)


def assert_same_predictions(got: dict, expected: dict):
    assert got["skipped"] == expected["skipped"] == []
    assert [row["video"] for row in got["videos"]] == [row["video"] for row in expected["videos"]]
    for row, reference in zip(got["videos"], expected["videos"], strict=True):
        assert [r["id"] for r in row["top"]] == [r["id"] for r in reference["top"]]
        assert [r["label"] for r in row["top"]] == [r["label"] for r in reference["top"]]
        for r, e in zip(row["top"], reference["top"], strict=True):
            assert r["probability"] == pytest.approx(e["probability"], abs=1e-4)
        for branch, gate in reference.get("gates", {}).items():
            assert row["gates"][branch] == pytest.approx(gate, abs=1e-4)


def test_predict_with_the_onnx_file_gives_the_checkpoints_predictions(colour_onnx, capsys):
    root, checkpoint, model, _ = colour_onnx
    # README: mbgf predict my_videos/ --checkpoint model.onnx --views 2x3 --explain
    args = [root / "val.txt", "--views", "2x3", "--explain", "--top-k", "3", "--workers", "0", "--batch-size", "4"]
    by_onnx = predict_json(capsys, *args, "--checkpoint", model)
    by_torch = predict_json(capsys, *args, "--checkpoint", checkpoint)
    assert len(by_onnx["videos"]) == 9 and set(by_onnx["videos"][0]["gates"]) == {"appearance", "temporal", "motion"}
    assert_same_predictions(by_onnx, by_torch)

    # a subset of the baked classes, in another order
    subset = ["--classes", f"{CLASS_NAMES[2]}, {CLASS_NAMES[0]}", root / "videos" / "c0", "--workers", "0"]
    assert_same_predictions(predict_json(capsys, *subset, "-c", model), predict_json(capsys, *subset, "-c", checkpoint))

    # the table names the ONNX model; classes it was not exported with are refused in one line
    # README: mbgf predict new_videos/val.txt --checkpoint model.onnx --top-k 2
    code, stdout, stderr = run_cli(["predict", root / "val.txt", "--checkpoint", model, "--top-k", "2", "--workers",
                                    "0"], capsys)
    assert code == 0 and "(ONNX, onnxruntime; epoch 1)" in " ".join(stdout.split()) and "something green" in stdout
    assert "top-2 of 3 classes" in stdout and "top-1 against the list's labels: 100.0% (9 of 9)" in stderr
    code, _, stderr = run_cli(["predict", root / "videos" / "c1", "-c", model, "--classes", "a dog"], capsys)
    assert code == 2 and "export with --free-text for other classes" in " ".join(stderr.split())
    code, _, stderr = run_cli(["predict", root / "videos" / "c1", "-c", model, "--prompts", "one"], capsys)
    assert code == 2 and "--prompts one:" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(["predict", root / "videos" / "c1", "-c", model, "--frames", "8"], capsys)
    assert code == 2 and "--frames 8:" in stderr


def test_the_python_api_embeds_videos_through_the_onnx_file_as_through_torch(colour_onnx):
    root, checkpoint, model, free = colour_onnx
    videos = [root / "videos" / "c2", root / "videos" / "c0" / "v1.mp4"]
    expected = Predictor.from_checkpoint(checkpoint, amp="off").embed(videos, workers=0)
    for onnx_file in (model, free):
        got = Predictor.from_checkpoint(onnx_file).embed(videos, workers=0)
        assert got.videos == expected.videos and len(got.videos) == 4
        assert (got.vectors - expected.vectors).abs().max() < 1e-5  # unit vectors
    assert Predictor.from_checkpoint(free).encode_texts(["a dog"]).shape == (1, 128)


def test_free_text_onnx_predicts_any_classes_as_the_checkpoint_does(colour_onnx, capsys):
    root, checkpoint, _, free = colour_onnx
    # README: mbgf predict new_videos/val.txt --checkpoint free-text.onnx --classes "..." (and --prompts one)
    for extra in ([], ["--prompts", "one"]):
        args = [root / "val.txt", "--classes", "something red, a blue sky, green grass", "--workers", "0", *extra]
        assert_same_predictions(predict_json(capsys, *args, "--checkpoint", free),
                                predict_json(capsys, *args, "--checkpoint", checkpoint))


def test_existing_files_are_refused_before_any_work_unless_mbgf_wrote_them(colour_onnx, tmp_path, capsys):
    root, checkpoint, model, _ = colour_onnx
    mine = tmp_path / "mine.onnx"
    mine.write_text("my notes")
    missing = tmp_path / "no-such-checkpoint"  # the output is checked first: the model is never read
    for extra in ([], ["--overwrite"]):
        code, _, stderr = run_cli(["export", missing, "--format", "onnx", "-o", mine, *extra], capsys)
        assert code == 2 and "is not an ONNX file mbgf exported" in stderr
        assert mine.read_text() == "my notes"
    (tmp_path / "folder.onnx").mkdir()
    code, _, stderr = run_cli(["export", missing, "--format", "onnx", "-o", tmp_path / "folder.onnx"], capsys)
    assert code == 2 and "is a folder" in stderr
    code, _, stderr = run_cli(["export", missing, "--format", "onnx", "-o", tmp_path / "model.bin"], capsys)
    assert code == 2 and "ending in .onnx" in stderr
    code, _, stderr = run_cli(["export", missing, "--format", "onnx", "-o", model], capsys)
    assert code == 2 and "give --overwrite to replace it" in stderr
    assert check_onnx_output(model, overwrite=True) == model  # mbgf's own file: --overwrite replaces it
    # the free-text pair: the text file beside it is checked too
    text = tmp_path / "model.text.onnx"
    text.write_text("mine too")
    code, _, stderr = run_cli(["export", missing, "--format", "onnx", "-o", tmp_path / "model.onnx", "--free-text"],
                              capsys)
    assert code == 2 and f"{text}: exists and is not an ONNX file" in stderr and text.read_text() == "mine too"
    code, _, stderr = run_cli(["export", checkpoint, "--format", "hf", "-o", tmp_path / "hf", "--free-text"], capsys)
    assert code == 2 and "options of --format onnx" in stderr
    code, _, stderr = run_cli(["predict", root / "videos" / "c0", "-c", mine], capsys)
    assert code == 2 and "mine.onnx: onnxruntime cannot load it" in stderr and "Traceback" not in stderr


def test_embed_with_baked_classes_is_refused_before_any_video_is_decoded(colour_onnx, tmp_path, capsys, monkeypatch):
    """An ONNX file without a text encoder cannot give the probe text's embedding the output keeps: one
    line up front, not after every video is embedded (the free-text file embeds)."""
    root, _, model, free = colour_onnx

    def no_decoding(*args, **kwargs):
        raise AssertionError("a video was decoded")

    monkeypatch.setattr(Predictor, "stream", no_decoding)
    monkeypatch.setattr(Predictor, "embed_windows", no_decoding)
    for timeline in ([], ["--timeline"]):
        output = tmp_path / f"e{len(timeline)}.safetensors"
        code, _, stderr = run_cli(["embed", root / "videos" / "c1", "-c", model, "-o", output, "--workers", "0",
                                   *timeline], capsys)
        assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
        assert "has no text encoder" in " ".join(stderr.split())
        assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    code, _, stderr = run_cli(["embed", root / "videos" / "c1", "-c", free, "-o", tmp_path / "e.safetensors",
                               "--workers", "0"], capsys)
    assert code == 0 and (tmp_path / "e.safetensors").is_file(), stderr
