"""Published checkpoints used directly by ``mbgf eval --checkpoint`` and ``mbgf train --init``: converted
on the fly and fed what they were trained on (X-CLIP's ImageNet normalisation, a Hugging Face
processor's mean/std, the prompts each paper tested with), end to end on generated videos."""

import csv
import math

import pytest
import reference_models as ref
import torch
import transformers
from yacs.config import CfgNode

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli import interop
from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.data import VideoDataset, read_labels
from tests.test_train_support import run_cli

FRAMES = 8


@pytest.fixture(scope="module")
def xclip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "xclip_tiny_8f.pth"
    torch.save({"model": ref.random_xclip_state_dict(ref.TinyDims(), frames=FRAMES, seed=3), "epoch": 29,
                "max_accuracy": 80.0}, path)
    return path


def predictions_of(model, meta, root, mean, std, frames=FRAMES):
    """(top-1 class, its probability) of every val video, computed here from the dataset and the model."""
    class_names = read_labels(root / "labels.csv")
    tokens = class_text_tokens(class_names, "all", meta["prompt_templates"])
    dataset = VideoDataset(root, "val.txt", len(class_names), frames=frames, input_size=model.config.input_size,
                           train=False, mean=mean, std=std)
    with torch.no_grad():
        probs = torch.stack([model(dataset[i][0], tokens).softmax(-1).mean(0) for i in range(len(dataset))])
    top = probs.max(dim=-1)
    return top.indices.tolist(), top.values


def evaluated(checkpoint, root, tmp_path, capsys):
    """``mbgf eval --checkpoint`` (fp32: the comparisons are at 1e-4) -> (predicted classes, probabilities)."""
    predictions = tmp_path / "predictions.csv"
    code, _, stderr = run_cli(["eval", "--checkpoint", checkpoint, "--root", root, "--workers", "0", "--amp", "off",
                               "--predictions", predictions, "--json"], capsys)
    assert code == 0, stderr
    rows = list(csv.DictReader(open(predictions)))
    return [int(row["predicted"]) for row in rows], torch.tensor([float(row["probability"]) for row in rows])


def test_eval_converts_a_published_file_on_the_fly(toy_dataset, xclip_file, tmp_path, capsys):
    predicted, probability = evaluated(xclip_file, toy_dataset, tmp_path, capsys)
    model, meta = interop.load_any_checkpoint(xclip_file)
    assert tuple(model.config.input_mean) == fusion.IMAGENET_MEAN
    expected, expected_probability = predictions_of(model.eval(), meta, toy_dataset, fusion.IMAGENET_MEAN,
                                                    fusion.IMAGENET_STD)
    assert predicted == expected
    assert torch.allclose(probability, expected_probability, atol=1e-4)
    # CLIP's normalisation gives other scores: the recorded statistics are what made these.
    _, clip_probability = predictions_of(model, meta, toy_dataset, fusion.CLIP_MEAN, fusion.CLIP_STD)
    assert not torch.allclose(probability, clip_probability, atol=1e-4)


def test_eval_takes_a_hugging_face_xclip_directory(toy_dataset, tmp_path, capsys):
    """A transformers XCLIPModel directory as the Hub has them (with its VideoMAE processor config):
    mbgf eval's predictions are transformers' own, on the frames mbgf's loader gives with the
    processor's mean/std."""
    dims, frames = ref.TinyDims(image=32), 4
    text = dict(vocab_size=dims.vocab, hidden_size=dims.text_width, intermediate_size=4 * dims.text_width,
                num_hidden_layers=dims.text_layers, num_attention_heads=2, max_position_embeddings=dims.context)
    vision = dict(hidden_size=dims.vision_width, intermediate_size=4 * dims.vision_width,
                  num_hidden_layers=dims.vision_layers,
                  num_attention_heads=2, image_size=dims.image, patch_size=dims.patch, num_frames=frames,
                  mit_hidden_size=dims.embed, mit_intermediate_size=4 * dims.embed, mit_num_attention_heads=2)
    config = transformers.XCLIPConfig(text_config=text, vision_config=vision, projection_dim=dims.embed,
                                      prompt_num_attention_heads=2)
    hf_model = transformers.XCLIPModel(config).eval()
    with torch.no_grad():  # trained-looking weights: transformers' initialisation leaves most at zero or one
        gen = torch.Generator().manual_seed(0)
        for name, p in hf_model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(math.log(1 / 0.07) + 0.1 * noise if name == "logit_scale" else
                    noise * p[0].numel() ** -0.5 if p.ndim > 1 else 0.1 * noise + (1.0 if "norm" in name else 0.0))
    directory = tmp_path / "xclip-tiny-hf"
    hf_model.save_pretrained(directory)
    transformers.VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}) \
        .save_pretrained(directory)  # mean/std 0.5, as the Hub's X-CLIP processors

    predicted, probability = evaluated(directory, toy_dataset, tmp_path, capsys)

    assert_transformers_agree(hf_model, toy_dataset, frames, predicted, probability)


def test_train_init_takes_an_xclip_file_as_its_training_code_wrote_it(toy_dataset, tmp_path, capsys):
    """The issue's file: X-CLIP's own checkpoint with its yacs config, at torch.save's default protocol."""
    dims = ref.TinyDims(image=32)
    weights = ref.random_xclip_state_dict(dims, frames=4, seed=5)
    config = CfgNode()
    config.DATA = CfgNode()
    config.DATA.NUM_FRAMES, config.DATA.INPUT_SIZE = 4, 32
    config.MODEL = CfgNode()
    config.MODEL.ARCH = "ViT-B/16"
    config.freeze()
    path = tmp_path / "k400_tiny_4.pth"
    torch.save({"model": weights, "optimizer": {}, "lr_scheduler": {}, "max_accuracy": 80.0, "epoch": 29,
                "config": config}, path)

    out = tmp_path / "run"
    code, _, stderr = run_cli(["train", "--dataset", "synthetic", "--root", toy_dataset, "--init", path, "--frames", "4",
                               "--batch-size", "8", "--total-batch", "8", "--epochs", "1", "--warmup-epochs", "0",
                               "--lr", "1e-5", "--workers", "0", "--no-plot", "--out", out], capsys)
    assert code == 0, stderr
    model, meta = load_checkpoint(out / "last")
    assert (meta["config"]["variant"], meta["config"]["frames"], meta["config"]["input_size"]) == ("xclip", 4, 32)
    assert tuple(meta["config"]["input_mean"]) == fusion.IMAGENET_MEAN  # trained on what X-CLIP's weights expect
    # Started from the file's weights (six small steps away from them), and trained.
    table = model.state_dict()["mit.positional_embedding"]
    start = weights["mit.positional_embedding"]
    assert 0 < float((table - start).abs().max()) < 0.01 < float(start.abs().max())


def assert_transformers_agree(hf_model, toy_dataset, frames, predicted, probability):
    """``mbgf eval``'s predictions (class and probability per video) equal a transformers XCLIPModel's on
    the same clips, averaged over views as eval does."""
    class_names = read_labels(toy_dataset / "labels.csv")
    tokens = class_text_tokens(class_names, "all", ["{}"]).reshape(len(class_names), -1)  # X-CLIP: the name alone
    dataset = VideoDataset(toy_dataset, "val.txt", len(class_names), frames=frames, input_size=32, train=False,
                           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    with torch.no_grad():
        probs = torch.stack([hf_model(input_ids=tokens, pixel_values=dataset[i][0]).logits_per_video.softmax(-1).mean(0)
                             for i in range(len(dataset))])
    assert predicted == probs.argmax(-1).tolist()
    assert torch.allclose(probability, probs.max(-1).values, atol=1e-4)
