import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import fusion
from clip.model import CLIP
from clip.released import RELEASED
from fusion.config import BACKBONES
from mbgf_cli import app as app_module
from mbgf_cli.flops import (
    count,
    prompt_cost_per_class,
    text_encoder_cost,
    video_model_cost,
)


def image_encoder_cost(backbone: str):
    """One 224 px frame through the CLIP image encoder, counted on meta."""
    with torch.device("meta"):
        model = CLIP(BACKBONES[backbone].clip_config)
    frame = torch.empty(1, 3, 224, 224, device="meta")
    return count(lambda: model.encode_image(frame), model)


def vit_macs(config, size: int) -> int:
    """Multiply-adds of a CLIP ViT on one image, written out: patch embedding, per block the qkv, output
    and MLP projections plus QK^T and AV over all tokens, and the final projection."""
    width, patches = config.vision_width, (size // config.vision_patch_size) ** 2
    tokens = patches + 1
    patch_embedding = patches * width * 3 * config.vision_patch_size ** 2
    block = tokens * (3 * width * width + width * width + 8 * width * width) + 2 * tokens * tokens * width
    return patch_embedding + config.vision_layers * block + width * config.embed_dim


@pytest.mark.parametrize("backbone, name, known_gflops", [("b16", "ViT-B/16", 17.56), ("b32", "ViT-B/32", 4.41)])
def test_image_encoder_known_answers(backbone, name, known_gflops):
    cost = image_encoder_cost(backbone)
    assert cost.flops == vit_macs(RELEASED[name].config, 224)
    assert cost.gflops == pytest.approx(known_gflops, rel=0.01)
    # Attention's products QK^T and AV are in the count (on meta, SDPA runs as bmm, softmax, bmm).
    tokens = (224 // RELEASED[name].config.vision_patch_size) ** 2 + 1
    assert cost.by_op["bmm"] == 12 * 2 * tokens * tokens * 768
    with torch.device("meta"):
        visual = CLIP(RELEASED[name].config).visual
    assert cost.params == sum(p.numel() for p in visual.parameters())  # the text encoder is not counted


def test_text_encoder_cost_per_class():
    cost = text_encoder_cost("b16")
    width, tokens = 512, 77
    block = tokens * 12 * width * width + 2 * tokens * tokens * width
    assert cost.flops == 12 * block + width * 512  # 12 blocks + the EOT token's projection
    assert cost.gflops == pytest.approx(2.98, abs=0.005)
    with torch.device("meta"):
        model = CLIP(RELEASED["ViT-B/16"].config)
    text_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("visual.") and n != "logit_scale")
    assert cost.params == text_params


@pytest.mark.parametrize("backbone, variant, frames, known_gflops", [
    ("b16", "clip", 8, 140.5), ("b32", "clip", 8, 35.3), ("b16", "actionclip", 32, 563.0),
])
def test_video_model_known_answers(backbone, variant, frames, known_gflops):
    config = fusion.VideoModelConfig(model=backbone, variant=variant, mbgf=False, frames=frames, input_size=224)
    assert video_model_cost(config).gflops == pytest.approx(known_gflops, rel=0.01)


@pytest.mark.parametrize("variant", ["clip", "actionclip", "xclip"])
def test_mbgf_overhead_on_b16_is_at_most_two_percent(variant):
    costs = [video_model_cost(fusion.VideoModelConfig(model="b16", variant=variant, mbgf=mbgf, frames=8))
             for mbgf in (False, True)]
    overhead = costs[1].flops / costs[0].flops - 1
    assert 0 < overhead <= 0.02
    assert costs[1].params > costs[0].params  # MBGF's own weights are counted


def test_xclip_prompt_generator_scales_with_classes():
    config = fusion.VideoModelConfig(model="tiny", variant="xclip", mbgf=False, frames=4)
    per_class = prompt_cost_per_class(config).flops
    # Two cross-attention layers per class text: q and output projections, a 4x MLP, and attention
    # over the 7x7 patch features of the video (width 128).
    assert per_class == 2 * (10 * 128 * 128 + 2 * 49 * 128)
    assert video_model_cost(config, classes=50).flops - video_model_cost(config, classes=1).flops == 49 * per_class


def test_fused_attention_kernels_count_like_the_math_path():
    # On CPU, SDPA runs as one fused op; on meta it decomposes into bmm, softmax, bmm. Same count.
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 12, 16), torch.randn(2, 4, 12, 8)
    expected = 2 * 4 * 10 * 12 * (16 + 8)
    for device in ("cpu", "meta"):
        for mask in (None, torch.zeros(10, 12)):
            args = [t.to(device) for t in (q, k, v)]
            mask = None if mask is None else mask.to(device)
            cost = count(lambda a=args, m=mask: F.scaled_dot_product_attention(*a, attn_mask=m), nn.Module())
            assert cost.flops == expected
    # A whole tiny CLIP: the CPU run (fused kernels) and the meta run agree.
    model = CLIP(BACKBONES["tiny"].clip_config).eval()
    cpu = count(lambda: model.encode_image(torch.randn(1, 3, 112, 112)), model)
    assert any("scaled_dot_product" in op for op in cpu.by_op)
    with torch.device("meta"):
        meta_model = CLIP(BACKBONES["tiny"].clip_config)
    meta = count(lambda: meta_model.encode_image(torch.empty(1, 3, 112, 112, device="meta")), meta_model)
    assert cpu.flops == meta.flops == vit_macs(BACKBONES["tiny"].clip_config, 112)


def test_multihead_attention_fast_paths_are_counted():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 64)
    attention = nn.MultiheadAttention(64, 4, batch_first=True)
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
    # Per sample: q, k, v and output projections, QK^T and AV (+ the feed-forward for the layer).
    expected_attention = 2 * (4 * 10 * 64 * 64 + 2 * 10 * 10 * 64)
    expected_layer = expected_attention + 2 * 2 * 10 * 64 * 128
    for module, run, expected in ((attention, lambda: attention(x, x, x, need_weights=False), expected_attention),
                                  (layer, lambda: layer(x), expected_layer)):
        slow = count(run, module.train())
        fast = count(run, module.eval())  # eval + no_grad: PyTorch's fused inference kernels
        assert slow.flops == fast.flops == expected
    assert "_native_multi_head_attention" in count(lambda: attention(x, x, x, need_weights=False), attention).by_op


def test_convolutions():
    x = torch.empty(1, 8, 10, 10, device="meta")
    with torch.device("meta"):
        grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)
        transposed = nn.ConvTranspose2d(8, 4, 2, stride=2)
    assert count(lambda: grouped(x), grouped).flops == 16 * 10 * 10 * (8 // 4) * 9
    assert count(lambda: transposed(x), transposed).flops == 8 * 10 * 10 * 4 * 4


# --- the command ------------------------------------------------------------------------------------

KEYS = {"name", "model", "variant", "mbgf", "frames", "input_size", "gflops", "params_m"}


def test_flops_json_schema():
    result = CliRunner().invoke(app_module.app, ["flops", "--model", "tiny", "--frames", "4", "8",
                                                 "--variant", "clip", "xclip", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 * 2 * 2 + 1
    for row in rows:
        assert set(row) == KEYS
        assert isinstance(row["mbgf"], bool) and isinstance(row["frames"], int)
        assert isinstance(row["gflops"], float) and row["gflops"] > 0 and row["params_m"] > 0
    video, text = rows[:-1], rows[-1]
    assert [(r["name"], r["frames"]) for r in video] == [
        ("CLIP-tiny", 4), ("CLIP-tiny+MBGF", 4), ("CLIP-tiny", 8), ("CLIP-tiny+MBGF", 8),
        ("X-CLIP-tiny", 4), ("X-CLIP-tiny+MBGF", 4), ("X-CLIP-tiny", 8), ("X-CLIP-tiny+MBGF", 8)]
    assert all(r["model"] == "tiny" and r["input_size"] == 112 for r in video)
    assert [r["mbgf"] for r in video] == [False, True] * 4
    assert video[2]["gflops"] == pytest.approx(2 * video[0]["gflops"], rel=0.01)  # linear in frames
    assert text["variant"] == "text" and text["frames"] == 0 and text["input_size"] == 77


def test_list_options_take_several_values_after_one_flag():
    result = CliRunner().invoke(app_module.app, ["flops", "--model", "tiny", "--frames=2", "4", "--variant", "clip",
                                                 "--input-size", "64", "--frames", "6", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)[:-1]
    assert [r["frames"] for r in rows] == [2, 2, 4, 4, 6, 6] and {r["input_size"] for r in rows} == {64}


def test_flops_table_for_b16(monkeypatch):
    from mbgf_cli.console import console

    monkeypatch.setattr(console, "width", 160)  # whatever an earlier test left in the environment
    result = CliRunner().invoke(app_module.app, ["flops", "--model", "b16", "--variant", "clip"],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "FLOPs(G)" in line)
    for column in ("Model", "Params(M)", "Input", "MBGF overhead"):
        assert column in header
    row = next(line for line in lines if "CLIP-B/16+MBGF" in line)
    assert "140.7" in row and "8x224" in row and "%" in row
    assert any("CLIP-B/16 text (per class)" in line and "2.98" in line for line in lines)


def test_flops_table_keeps_three_digits_for_small_models(monkeypatch):
    from mbgf_cli.console import console

    monkeypatch.setattr(console, "width", 160)  # whatever an earlier test left in the environment
    result = CliRunner().invoke(app_module.app, ["flops", "--model", "tiny", "--frames", "8", "--input-size", "48",
                                                 "--variant", "clip"], env={"COLUMNS": "160"})
    rows = json.loads(CliRunner().invoke(app_module.app, ["flops", "--model", "tiny", "--frames", "8",
                                                           "--input-size", "48", "--variant", "clip", "--json"]).stdout)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "CLIP-tiny+MBGF" in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[2] == f"{rows[1]['gflops']:.3g}" and cells[2].startswith("0.0")  # not "0.07"
    assert cells[5].startswith(f"+{rows[1]['gflops'] - rows[0]['gflops']:.3g} G")  # not "+0.00 G"


@pytest.mark.parametrize("args, message", [
    (["--variant", "slowfast"], "--variant must be one of clip, actionclip, xclip, not 'slowfast'"),
    (["--input-size", "100"], "input size 100 is not a multiple of b16's patch size 16"),
    (["--frames", "8", "0"], "--frames must be at least 1, not 0"),
])
def test_bad_options_are_one_line_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["flops", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
