"""fusion: shapes, MBGF at initialisation, frame order, X-CLIP's cross-frame mixing, text cache,
config round trip, meta-device builds."""

import json
from dataclasses import replace

import pytest
import torch

import clip
import fusion
from clip.model import CLIP, CLIPConfig
from fusion.registry import VideoModelConfig

VARIANTS = ("clip", "actionclip", "xclip")
T, SIZE, K, P = 4, 32, 3, 2  # tiny at 32 px: a 2x2 patch grid keeps these tests fast


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(variant, mbgf, **options):
    return fusion.build_video_model("tiny", variant, mbgf=mbgf, frames=T, input_size=SIZE, **options)


def class_tokens(k=K, p=None, seed=0):
    """Token rows like clip.tokenize's: start, a few ids, end-of-text (the largest id), zeros."""
    g = torch.Generator().manual_seed(seed)
    shape = (k, p) if p else (k,)
    tokens = torch.zeros(*shape, 77, dtype=torch.long)
    tokens[..., 0] = 49406
    tokens[..., 1:5] = torch.randint(1, 49000, (*shape, 4), generator=g)
    tokens[..., 5] = 49407
    return tokens


def clips(b=2, t=T, size=SIZE, seed=0):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mbgf", [False, True])
def test_shapes_and_gates(variant, mbgf):
    torch.manual_seed(0)
    model = tiny(variant, mbgf)
    x, e = clips(), model.clip_config.embed_dim
    with torch.no_grad():
        video, details = model.encode_video(x, return_details=True)
        assert video.shape == (2, e)
        assert details["frame_features"].shape == (2, T, e)
        assert details["patch_tokens"].shape == (2, T, (SIZE // 16) ** 2, model.clip_config.vision_width)
        assert model.encode_text(class_tokens()).shape == (K, e)
        assert model.encode_text(class_tokens(p=P)).shape == (K, P, e)

        for tokens in (class_tokens(), class_tokens(p=P)):
            for training in (False, True):
                model.train(training)
                logits, details = model(x, tokens, return_details=True)
                assert logits.shape == (2, K) and torch.isfinite(logits).all()
                if mbgf:
                    gates = details["gates"]
                    assert gates.shape == (2, 3) and (gates >= 0).all()
                    torch.testing.assert_close(gates.sum(dim=1), torch.ones(2))
                    for branch in ("appearance", "temporal", "motion"):
                        assert details[branch].shape == (2, e)
                else:
                    assert "gates" not in details
                per_video = variant == "xclip" or (training and tokens.dim() == 3)
                assert details["text_features"].shape == ((2, K, e) if per_video else (K, e))


@pytest.mark.parametrize("variant", VARIANTS)
def test_template_eval_modes(variant):
    """Eval with P templates: mean_text equals scoring the template-averaged text; mean_softmax is
    ActionCLIP's average of per-template softmax, at a fixed test scale."""
    torch.manual_seed(0)
    x, tokens = clips(), class_tokens(p=P)
    model = tiny(variant, mbgf=False)
    with torch.no_grad():
        mean_text = model(x, tokens)
        per_template = torch.stack([model(x, tokens[:, i]) for i in range(P)], dim=-1)  # [B, K, P]
        if variant != "xclip":  # the average of the text features, then one cosine per class
            video = torch.nn.functional.normalize(model.encode_video(x), dim=-1)
            text = torch.nn.functional.normalize(model.encode_text(tokens).mean(dim=1), dim=-1)
            torch.testing.assert_close(mean_text, model.logit_scale.exp() * video @ text.t())

        actionclip_test = fusion.build_from_config(
            VideoModelConfig.from_dict({**model.config.to_dict(), "template_eval": "mean_softmax",
                                        "test_logit_scale": 100.0}),
            clip_model=None)
        actionclip_test.load_state_dict(model.state_dict())
        logits = actionclip_test(x, tokens)
        scale = model.logit_scale.exp()
        expected = (per_template / scale * 100.0).softmax(dim=1).mean(dim=2)
        torch.testing.assert_close(logits.softmax(dim=-1), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logits.exp().sum(dim=-1), torch.ones(2))


def test_training_draws_one_template_per_video():
    torch.manual_seed(0)
    model = tiny("clip", mbgf=False).train()
    tokens = class_tokens(p=P)
    x = clips(b=8)
    with torch.no_grad():
        text = model.encode_text(tokens)
        _, details = model(x, tokens, return_details=True)
    chosen = details["text_features"]  # [B, K, E]: every video's classes in one template
    matches = (chosen[:, :, None] == text[None]).all(dim=-1)  # [B, K, P]
    assert matches.any(dim=-1).all()
    template = matches.float().argmax(dim=-1)
    assert (template == template[:, :1]).all(), "one template for all classes of a video"
    assert template[:, 0].unique().numel() == P, "templates drawn at random over the batch (seeded)"


@pytest.mark.parametrize("variant", VARIANTS)
def test_mbgf_at_init_equals_the_variant(variant):
    torch.manual_seed(0)
    shared = CLIP(VideoModelConfig(model="tiny", input_size=SIZE).clip_config)  # one CLIP for both models
    base = fusion.build_video_model("tiny", variant, mbgf=False, frames=T, input_size=SIZE, clip_model=shared)
    with_mbgf = fusion.build_video_model("tiny", variant, mbgf=True, frames=T, input_size=SIZE, clip_model=shared)
    result = with_mbgf.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("mbgf.") for k in result.missing_keys)

    x, tokens = clips(b=3), class_tokens(p=P)
    with torch.no_grad():
        assert (with_mbgf.encode_video(x) - base.encode_video(x)).abs().max() == 0
        assert (with_mbgf(x, tokens) - base(x, tokens)).abs().max() == 0
        # ... and only because P_s, P_m are zero: moving them moves the output.
        torch.nn.init.normal_(with_mbgf.mbgf.motion_proj.weight, std=0.1)
        assert (with_mbgf.encode_video(x) - base.encode_video(x)).abs().max() > 1e-3


def test_clip_variant_ignores_frame_order():
    torch.manual_seed(0)
    model = tiny("clip", mbgf=False)
    x = clips(b=3)
    shuffled = x[:, torch.tensor([2, 0, 3, 1])]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(shuffled), model.encode_video(x), rtol=1e-5, atol=1e-5)
        # MBGF's temporal and motion branches depend on the order once their projections are non-zero.
        model = tiny("clip", mbgf=True)
        torch.nn.init.normal_(model.mbgf.motion_proj.weight, std=0.1)
        torch.nn.init.normal_(model.mbgf.temporal_proj.weight, std=0.1)
        assert (model.encode_video(shuffled) - model.encode_video(x)).abs().max() > 1e-3


def test_xclip_messages_mix_frames():
    """Changing frame 0 changes frame 3's embedding in X-CLIP (messages cross frames), not in CLIP."""
    torch.manual_seed(0)
    x = clips(b=2)
    changed = x.clone()
    changed[:, 0] = torch.randn_like(changed[:, 0])
    for variant, mixes in (("xclip", True), ("clip", False)):
        model = tiny(variant, mbgf=False)
        with torch.no_grad():
            before, after = model.encode_frames(x)[0], model.encode_frames(changed)[0]
        assert (before[:, 0] - after[:, 0]).abs().max() > 1e-3
        frame3_change = (before[:, 3] - after[:, 3]).abs().max().item()
        assert (frame3_change > 1e-4) if mixes else (frame3_change == 0), (variant, frame3_change)
    # Videos do not mix with each other: changing video 0 leaves video 1 alone.
    model = tiny("xclip", mbgf=False)
    video0_changed = x.clone()
    video0_changed[0, 0] = torch.randn_like(x[0, 0])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_frames(video0_changed)[0][1], model.encode_frames(x)[0][1])


def test_fewer_frames_than_configured_and_more_refused():
    torch.manual_seed(0)
    for variant in VARIANTS:
        model = tiny(variant, mbgf=True)
        with torch.no_grad():
            assert model(clips(t=T - 2), class_tokens()).shape == (2, K)
            if variant != "actionclip":  # ActionCLIP's table has 77 rows; X-CLIP's and MBGF's T
                with pytest.raises(ValueError, match="frames"):
                    model(clips(t=T + 1), class_tokens())


def test_text_cache():
    torch.manual_seed(0)
    model = tiny("clip", mbgf=False)
    tokens = class_tokens()
    with torch.no_grad():
        first = model.encode_text(tokens)
        assert model.encode_text(tokens.clone()).data_ptr() == first.data_ptr()  # cached: same tokens, weights
        other = model.encode_text(class_tokens(seed=1))
        assert not torch.equal(other, first)
        model.ln_final.bias.add_(1.0)  # a weight update (in place, as optimisers do) invalidates it
        assert not torch.equal(model.encode_text(tokens), first)
    # Trainable text with gradients on: never cached, and gradients reach the text encoder.
    model.train()
    out = model.encode_text(tokens)
    assert out.requires_grad
    out.sum().backward()
    assert model.token_embedding.weight.grad is not None
    # Frozen text: cached even with gradients on.
    model.freeze_text()
    assert all(not p.requires_grad for p in model.text_parameters())
    a = model.encode_text(tokens)
    assert model.encode_text(tokens).data_ptr() == a.data_ptr() and not a.requires_grad
    assert model.visual.conv1.weight.requires_grad


def test_clip_parameters_and_grad_checkpointing():
    torch.manual_seed(0)
    model = tiny("xclip", mbgf=True)
    names = [name for name, _ in model.named_parameters()]
    new = [n for n in names if not model.is_clip_parameter(n)]
    assert {n.split(".")[0] for n in new} == {"mit", "prompts_visual_ln", "prompts_visual_proj",
                                               "prompts_generator", "mbgf", "visual"}
    assert all(".message_" in n for n in new if n.startswith("visual."))
    assert model.is_clip_parameter("visual.transformer.resblocks.0.attn.in_proj_weight")
    assert model.is_clip_parameter("logit_scale") and model.is_clip_parameter("token_embedding.weight")

    x, tokens = clips(), class_tokens()
    model.train()
    torch.manual_seed(1)
    plain = model(x, tokens)
    plain.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    checkpointed = model(x, tokens)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast():
    torch.manual_seed(0)
    model = tiny("xclip", mbgf=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, details = model(clips(), class_tokens(p=P), return_details=True)
    assert torch.isfinite(logits.float()).all() and details["gates"].dtype == torch.float32
    logits.float().sum().backward()
    assert model.mbgf.motion_proj.weight.grad is not None


def test_config_round_trip_and_rebuild():
    config = VideoModelConfig(model="tiny", variant="actionclip", mbgf=True, frames=6, input_size=64,
                              input_mean=fusion.IMAGENET_MEAN, input_std=fusion.IMAGENET_STD,
                              template_eval="mean_softmax", test_logit_scale=100.0)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["model"] == "tiny" and data["input_size"] == 64
    assert VideoModelConfig.from_dict(data) == config
    assert config.name == "ActionCLIP-tiny+MBGF"
    assert VideoModelConfig(model="b16", variant="xclip", mbgf=False).name == "X-CLIP-B/16"
    assert VideoModelConfig(model="b16").input_size == 224

    torch.manual_seed(0)
    model = fusion.build_video_model(**data)
    rebuilt = fusion.build_from_config(VideoModelConfig.from_dict(data))
    assert model.config == rebuilt.config == config
    rebuilt.load_state_dict(model.state_dict())  # same architecture, key for key
    x = clips(t=6, size=64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, class_tokens()), model(x, class_tokens()))

    with pytest.raises(ValueError, match="unknown video model option"):
        VideoModelConfig.from_dict({**data, "colour": "red"})
    with pytest.raises(ValueError, match="unknown variant"):
        fusion.build_video_model("tiny", "slowfast")
    with pytest.raises(ValueError, match="patch size"):
        fusion.build_video_model("tiny", input_size=50)
    with pytest.raises(ValueError, match="no pretrained"):
        fusion.build_video_model("tiny", pretrained=True)
    with pytest.raises(ValueError, match="not the b16 backbone"):
        fusion.build_video_model("b16", clip_model=CLIP(model.clip_config))


def test_a_custom_backbone_round_trips_through_json_and_rebuilds():
    """A CLIP of a size no backbone has: the config carries its architecture (a dict in JSON), and
    the model rebuilt from that JSON alone takes the same weights and computes the same."""
    architecture = CLIPConfig(embed_dim=48, image_resolution=32, vision_layers=2, vision_width=96,
                              vision_patch_size=8, vision_heads=3, vision_mlp_width=200, transformer_width=64,
                              transformer_heads=4, transformer_layers=1, activation="gelu")
    config = VideoModelConfig(model="custom", architecture=architecture, variant="clip", mbgf=True, frames=3)
    assert config.input_size == 32 and config.name == "CLIP-W96-L2/8@32+MBGF"
    data = json.loads(json.dumps(config.to_dict()))
    assert data["architecture"]["vision_heads"] == 3 and data["architecture"]["transformer_mlp_width"] == 256
    assert VideoModelConfig.from_dict(data) == config
    assert "architecture" not in VideoModelConfig(model="tiny").to_dict()  # named backbones: as before
    torch.manual_seed(0)
    model = fusion.build_from_config(config)
    rebuilt = fusion.build_video_model(**data)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.visual.transformer.resblocks[0].attn.heads == 3
    assert isinstance(rebuilt.visual.transformer.resblocks[0].mlp.gelu, torch.nn.GELU)
    x = clips(t=3, size=32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, class_tokens()), model(x, class_tokens()))
    assert fusion.parameter_count(config) == sum(p.numel() for p in model.parameters())

    with pytest.raises(ValueError, match="model 'custom' needs its architecture"):
        VideoModelConfig(model="custom")
    with pytest.raises(ValueError, match="for model 'custom' only"):
        VideoModelConfig(model="b16", architecture=architecture)
    with pytest.raises(ValueError, match="architecture: .*unexpected keyword argument 'depth'"):
        VideoModelConfig.from_dict({**data, "architecture": {**data["architecture"], "depth": 3}})
    with pytest.raises(ValueError, match="vision width 96 is not divisible by 5 heads"):
        CLIPConfig(48, 32, 2, 96, 8, vision_heads=5)


def test_backbone_for_names_the_registered_architectures():
    for model in clip.RELEASED.values():
        assert fusion.backbone_for(model.config) == (model.short_name, None)
        assert fusion.BACKBONES[model.short_name].clip_name == model.name
    tiny = fusion.BACKBONES["tiny"].clip_config
    assert fusion.backbone_for(replace(tiny, image_resolution=48)) == ("tiny", None)  # tiny: any resolution
    b16_at_384 = replace(clip.RELEASED["ViT-B/16"].config, image_resolution=384)
    assert fusion.backbone_for(b16_at_384) == ("custom", b16_at_384)  # other positions: not OpenAI's B/16
    # model=None: the backbone a given CLIP is, named or custom
    with torch.device("meta"):
        assert fusion.build_video_model(None, clip_model=CLIP(b16_at_384)).config.architecture == b16_at_384
        assert fusion.build_video_model(None, clip_model=CLIP(clip.RELEASED["ViT-L/14@336px"].config)).config.model \
            == "l14-336"


def test_meta_device_builds_without_files():
    with torch.device("meta"):
        for name in ("b32", "b16", "l14"):
            for variant in VARIANTS:
                model = fusion.build_video_model(name, variant, mbgf=True, frames=8)
                assert model.visual.conv1.weight.is_meta and model.mbgf.motion_proj.weight.is_meta
        model = fusion.build_video_model("b16", "xclip", mbgf=True, frames=8)
        logits = model(torch.empty(1, 8, 3, 224, 224), torch.zeros(400, 77, dtype=torch.long))
    assert logits.shape == (1, 400) and logits.is_meta


def test_b32_forward():
    torch.manual_seed(0)
    model = fusion.build_video_model("b32", "xclip", mbgf=True, frames=2)
    with torch.no_grad():
        logits, details = model(clips(b=1, t=2, size=224), class_tokens(), return_details=True)
    assert logits.shape == (1, K) and torch.isfinite(logits).all()
    assert details["patch_tokens"].shape == (1, 2, 49, 768)
    assert details["video_features"].shape == (1, 512)
