"""Pieces of the training engine: parameter groups, the schedule, accumulation, text tokens, presets."""

import math

import pytest
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli import presets
from mbgf_cli.errors import UserError
from mbgf_cli.training import (
    TrainConfig,
    accumulation_steps,
    lr_schedule,
    make_param_groups,
    resolve_config,
)


def test_param_groups_split_clip_and_new_weights_and_spare_norms_biases_embeddings_from_decay():
    model = fusion.build_video_model(model="tiny", variant="xclip", mbgf=True, frames=4, input_size=32)
    model.freeze_text()
    groups = make_param_groups(model, TrainConfig(new_lr_mult=10.0, weight_decay=0.001))
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["group"]: [names[id(p)] for p in g["params"]] for g in groups}
    assert set(by_group) == {"clip/decay", "clip/no_decay", "new/decay", "new/no_decay"}
    for group in groups:
        assert group["lr_mult"] == (10.0 if group["group"].startswith("new") else 1.0)
        assert group["weight_decay"] == (0.0 if group["group"].endswith("no_decay") else 0.001)
    assert "visual.conv1.weight" in by_group["clip/decay"]
    assert {"visual.class_embedding", "visual.positional_embedding", "logit_scale"} <= set(by_group["clip/no_decay"])
    assert all(not n.startswith("transformer.") and n != "token_embedding.weight"  # frozen text: not trained
               for n in sum(by_group.values(), []))
    assert any(n.startswith("mbgf.") for n in by_group["new/decay"])
    assert any(n.startswith("mit.") for n in by_group["new/decay"])
    assert all(not n.endswith(".bias") for g in ("clip/decay", "new/decay") for n in by_group[g])
    trained = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in groups) == len(trained)


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    warmup, total, floor = 10, 110, 0.01
    factors = [lr_schedule(i, warmup, total, floor) for i in range(total)]
    assert factors[0] == pytest.approx(1 / 11) and factors[9] == pytest.approx(10 / 11)
    assert all(a < b for a, b in zip(factors[:10], factors[1:11], strict=True))
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert lr_schedule(total, warmup, total, floor) == pytest.approx(floor)


def test_accumulation_fills_the_total_batch():
    assert accumulation_steps(256, 8, 8) == 4  # X-CLIP: 8 GPUs x 8 clips x 4 steps
    assert accumulation_steps(16, 16, 1) == 1
    with pytest.raises(UserError, match="not a multiple"):
        accumulation_steps(100, 8, 2)


def test_trimmed_class_tokens_give_the_same_text_features():
    names = ["moving something up", "two things approaching each other", "abseiling"]
    model = fusion.build_video_model(model="tiny", variant="clip", mbgf=False, frames=2, input_size=32)
    from fusion.prompts import TEMPLATES, class_tokens

    full = class_tokens(names, TEMPLATES)  # [K, P, 77]
    trimmed = class_text_tokens(names, "all")
    assert trimmed.shape[:2] == full.shape[:2] and trimmed.shape[2] < 77
    with torch.no_grad():
        assert torch.allclose(model.encode_text(trimmed), model.encode_text(full), atol=1e-5)
    one = class_text_tokens(names, "one")
    assert one.dim() == 2 and torch.equal(one, full[:, 0, : one.shape[1]])


def test_presets_fill_only_what_was_not_given():
    cfg = resolve_config(TrainConfig(dataset="k400", lr=1e-5))
    recipe = presets.PRESETS["k400"].recipe
    assert (cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.weight_decay, cfg.total_batch) == (1e-5, 30, 5, 0.001, 256)
    assert cfg.model == recipe["model"] == "b16" and cfg.freeze_text is True
    synthetic = resolve_config(TrainConfig(dataset="synthetic"))
    assert synthetic.model == "tiny" and synthetic.flip is False  # direction is the label
    assert presets.PRESETS["k400"].label_file().name == "kinetics_400_labels.csv"
    with pytest.raises(UserError, match="unknown dataset preset"):
        resolve_config(TrainConfig(dataset="k700"))


def test_synthetic_data_lives_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path))
    assert presets.synthetic_dir().parent == tmp_path / "datasets"
