"""``mbgf eval --checkpoint FILE.pth`` converts a published checkpoint on the fly and feeds it what it was
trained on: X-CLIP's ImageNet normalisation and the prompts its paper tested with."""

import csv

import pytest
import reference_models as ref
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli import interop
from mbgf_cli.data import VideoDataset, read_labels
from tests.test_train_support import make_dataset, run_cli

FRAMES = 8


@pytest.fixture(scope="module")
def xclip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "xclip_tiny_8f.pth"
    torch.save({"model": ref.random_xclip_state_dict(ref.TinyDims(), frames=FRAMES, seed=3), "epoch": 29,
                "max_accuracy": 80.0}, path)
    return path


def predictions_of(model, meta, root, mean, std):
    """(top-1 class, its probability) of every val video, computed here from the dataset and the model."""
    class_names = read_labels(root / "labels.csv")
    tokens = class_text_tokens(class_names, "all", meta["prompt_templates"])
    dataset = VideoDataset(root, "val.txt", len(class_names), frames=FRAMES, input_size=model.config.input_size,
                           train=False, mean=mean, std=std)
    with torch.no_grad():
        probs = torch.stack([model(dataset[i][0], tokens).softmax(-1).mean(0) for i in range(len(dataset))])
    top = probs.max(dim=-1)
    return top.indices.tolist(), top.values


def test_eval_converts_a_published_file_on_the_fly(tmp_path_factory, xclip_file, tmp_path, capsys):
    root = make_dataset(tmp_path_factory)
    predictions = tmp_path / "predictions.csv"
    code, _, stderr = run_cli(["eval", "--checkpoint", xclip_file, "--root", root, "--workers", "0",
                               "--predictions", predictions, "--json"], capsys)
    assert code == 0, stderr
    rows = list(csv.DictReader(open(predictions)))
    predicted = [int(row["predicted"]) for row in rows]
    probability = torch.tensor([float(row["probability"]) for row in rows])

    model, meta = interop.load_any_checkpoint(xclip_file)
    assert tuple(model.config.input_mean) == fusion.IMAGENET_MEAN
    expected, expected_probability = predictions_of(model.eval(), meta, root, fusion.IMAGENET_MEAN,
                                                    fusion.IMAGENET_STD)
    assert predicted == expected
    assert torch.allclose(probability, expected_probability, atol=1e-4)
    # CLIP's normalisation gives other scores: the recorded statistics are what made these.
    _, clip_probability = predictions_of(model, meta, root, fusion.CLIP_MEAN, fusion.CLIP_STD)
    assert not torch.allclose(probability, clip_probability, atol=1e-4)
