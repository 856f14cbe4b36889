"""``mbgf models``: the registry's every model, its parameters (counted on the meta device), input and
where its weights come from; ``--json`` and the filter."""

import json

import pytest
import torch

import clip
import fusion
from tests.test_train_support import run_cli

ROW_KEYS = {"id": str, "name": str, "model": str, "variant": str, "mbgf": bool, "parameters": int, "frames": int,
            "input_size": int, "patch_size": int, "embed_dim": int, "weights": dict}


def models_json(capsys, *args) -> list[dict]:
    code, out, err = run_cli(["models", *args, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_tiny_parameter_counts_are_those_of_the_built_models(capsys):
    rows = models_json(capsys, "tiny*")
    assert [row["id"] for row in rows] == ["tiny-clip", "tiny-clip-mbgf", "tiny-actionclip", "tiny-actionclip-mbgf",
                                           "tiny-xclip", "tiny-xclip-mbgf"]
    for row in rows:
        torch.manual_seed(0)
        model = fusion.build_video_model("tiny", row["variant"], mbgf=row["mbgf"])  # real tensors, on the CPU
        assert row["parameters"] == sum(p.numel() for p in model.parameters()), row["id"]
        assert (row["frames"], row["input_size"]) == (model.config.frames, model.config.input_size)
        assert row["weights"] == {"kind": "random", "clip": None, "file": None, "url": None}


def test_the_json_lists_every_backbone_variant_and_mbgf_with_its_weights(capsys, monkeypatch):
    monkeypatch.setenv("MBGF_CLIP_URL", "https://mirror.example/clip")
    rows = models_json(capsys)
    assert len(rows) == len(fusion.BACKBONES) * len(fusion.VARIANTS) * 2
    assert {row["model"] for row in rows} == set(fusion.BACKBONES) >= {"b32", "b16", "l14", "l14-336", "tiny"}
    for row in rows:
        assert set(row) == set(ROW_KEYS) and all(isinstance(row[k], t) for k, t in ROW_KEYS.items()), row
        assert row["id"] == f"{row['model']}-{row['variant']}" + ("-mbgf" if row["mbgf"] else "")
    b16 = next(row for row in rows if row["id"] == "b16-clip")
    released = clip.RELEASED["ViT-B/16"]
    assert b16["weights"] == {"kind": "openai", "clip": "ViT-B/16", "file": "ViT-B-16.pt",
                              "url": f"https://mirror.example/clip/{released.sha256}/ViT-B-16.pt"}
    # OpenAI's ViT-B/16 state dict has 149,620,737 values: the plain CLIP variant is exactly CLIP.
    assert (b16["parameters"], b16["input_size"], b16["patch_size"]) == (149_620_737, 224, 16)
    l14_336 = next(row for row in rows if row["id"] == "l14-336-clip")
    assert (l14_336["input_size"], l14_336["weights"]["clip"]) == (336, "ViT-L/14@336px")
    assert all(row["parameters"] > b16["parameters"] for row in rows if row["model"] == "b16" and row is not b16)


@pytest.mark.parametrize("pattern, ids", [
    ("b16*", ["b16-clip", "b16-clip-mbgf", "b16-actionclip", "b16-actionclip-mbgf", "b16-xclip", "b16-xclip-mbgf"]),
    ("*-xclip-mbgf", [f"{b}-xclip-mbgf" for b in fusion.BACKBONES]),
    ("X-CLIP-B/32", ["b32-xclip"]),  # the table name, case-insensitive
    ("l14-336-CLIP", ["l14-336-clip"]),
])
def test_the_filter_matches_ids_and_names(pattern, ids):
    assert [fusion.model_id(config) for config in fusion.list_models(pattern)] == ids


def test_the_table_and_a_filter_that_matches_nothing(capsys):
    code, out, _ = run_cli(["models", "b16*"], capsys)  # as the README writes it: mbgf models 'b16*'
    assert code == 0
    assert "b16-xclip-mbgf" in out and "ViT-B/16" in out and "b32" not in out and "tiny" not in out
    code, out, err = run_cli(["models", "vit-h*"], capsys)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "no model matches 'vit-h*'" in line and "b16-xclip-mbgf" in line
