"""fusion and the published checkpoints: key names and shapes (X-CLIP's and ActionCLIP's, ViT-B/16 at 8
frames), CLIP weights surviving every variant, and the forward passes against from-scratch references
of the published code (tests/reference_models.py)."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import fusion
from clip.model import CLIP, build_model
from fusion.config import BACKBONES, VideoModelConfig
from tests import reference_models as ref

# The published key lists (name<TAB>[shape] per line), copied from X-CLIP's and ActionCLIP's released
# checkpoints: tests/data/README.md says where each comes from.
DATA = Path(__file__).resolve().parent / "data"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def published_keys(name: str) -> dict[str, list[int]]:
    rows = (line.split("\t") for line in (DATA / name).read_text().splitlines() if line.strip())
    return {key: [int(n) for n in shape.strip("[]").split(",") if n.strip()] for key, shape in rows}


def shapes(state_dict) -> dict[str, list[int]]:
    return {key: list(tensor.shape) for key, tensor in state_dict.items()}


def test_xclip_b16_state_dict_is_xclips():
    with torch.device("meta"):
        model = fusion.build_video_model("b16", "xclip", mbgf=False, frames=8)
    assert shapes(model.state_dict()) == published_keys("xclip_b16_8f_state_dict.tsv")


def test_actionclip_b16_head_is_actionclips():
    with torch.device("meta"):
        model = fusion.build_video_model("b16", "actionclip", mbgf=False, frames=8)
    head = {k.removeprefix("fusion_model."): v for k, v in shapes(model.state_dict()).items()
            if k.startswith("fusion_model.")}
    assert head == published_keys("actionclip_transf_b16_8f_fusion_state_dict.tsv")
    # Everything else is CLIP, under OpenAI's names.
    with torch.device("meta"):
        clip_keys = set(CLIP(BACKBONES["b16"].clip_config).state_dict())
    assert {k for k in model.state_dict() if not k.startswith("fusion_model.")} == clip_keys
    assert all(block.ln_1.eps == 1e-12 and block.ln_2.eps == 1e-12
               for block in model.fusion_model.transformer.resblocks)


@pytest.fixture(scope="module")
def reduced_b16_config():
    return replace(BACKBONES["b16"].clip_config, vision_layers=2, transformer_layers=1)


@pytest.fixture(scope="module")
def openai_b16(reduced_b16_config):
    """A random state dict in OpenAI's archive layout: fp16 tensors plus the three integer entries."""
    torch.manual_seed(0)
    state = {k: v.half() for k, v in CLIP(reduced_b16_config).state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    return state


@pytest.fixture
def reduced_b16(monkeypatch, reduced_b16_config):
    """ViT-B/16's widths, patch and resolution with 2 vision blocks and 1 text block (a full one is
    ~600 MB of random weights): the b16 registry entry points at it for this test."""
    monkeypatch.setitem(BACKBONES, "b16", replace(BACKBONES["b16"], clip_config=reduced_b16_config))


@pytest.mark.parametrize("mbgf", [False, True])
def test_openai_weights_survive_every_b16_variant(reduced_b16, openai_b16, mbgf):
    openai = openai_b16
    weights = {k: v.float() for k, v in openai.items() if v.is_floating_point()}
    for variant in ("clip", "actionclip", "xclip"):
        # Through a CLIP model (what clip.load gives) ...
        model = fusion.build_video_model("b16", variant, mbgf=mbgf, frames=8, clip_model=build_model(openai))
        state = model.state_dict()
        for key, value in weights.items():
            assert torch.equal(state[key], value), (variant, key)
        # ... and loading the state dict into a randomly initialised model: only new parts are missing.
        model = fusion.build_video_model("b16", variant, mbgf=mbgf, frames=8)
        result = model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys
        assert not any(model.is_clip_parameter(k) for k in result.missing_keys)
        assert bool(result.missing_keys) == (variant != "clip" or mbgf)  # plain CLIP adds nothing
        assert {k for k, _ in model.named_parameters() if model.is_clip_parameter(k)} == set(weights)
        state = model.state_dict()
        assert all(torch.equal(state[key], value) for key, value in weights.items()), variant


def test_xclip_forward_matches_the_published_math():
    """X-CLIP (cross-frame messages, MIT, video-specific prompts) against a from-scratch reference of
    microsoft/VideoX's forward pass, with this model's weights."""
    torch.manual_seed(0)
    model = fusion.build_video_model("tiny", "xclip", mbgf=False, frames=4, input_size=32)
    with torch.no_grad():  # a non-trivial prompt offset, so that the generator's math is checked
        model.prompts_generator.alpha.fill_(0.5)
        clips = torch.randn(2, 4, 3, 32, 32)
        tokens = torch.zeros(3, 77, dtype=torch.long)
        tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 49406, torch.randint(1, 49000, (3, 3)), 49407
        expected = ref.xclip_logits(model.state_dict(), clips, tokens)
        torch.testing.assert_close(model(clips, tokens), expected, rtol=1e-4, atol=1e-4)


def test_actionclip_forward_matches_the_published_math():
    """ActionCLIP's "Transf" head and its test recipe (scale 100, softmax averaged over templates)."""
    torch.manual_seed(0)
    model = fusion.build_video_model("tiny", "actionclip", mbgf=False, frames=4, input_size=32,
                                     template_eval="mean_softmax", test_logit_scale=100.0)
    state = model.state_dict()
    head = {k.removeprefix("fusion_model."): v for k, v in state.items() if k.startswith("fusion_model.")}
    clip_state = {k: v for k, v in state.items() if not k.startswith("fusion_model.")}
    clips = torch.randn(2, 4, 3, 32, 32)
    tokens = torch.zeros(3, 2, 77, dtype=torch.long)  # [K, P, 77]
    tokens[..., 0], tokens[..., 1:4], tokens[..., 4] = 49406, torch.randint(1, 49000, (3, 2, 3)), 49407
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(clips), ref.actionclip_video_embedding(clip_state, head, clips),
                                   rtol=1e-5, atol=1e-5)
        expected = ref.actionclip_test_scores(clip_state, head, clips, tokens.transpose(0, 1))
        torch.testing.assert_close(model(clips, tokens).exp(), expected, rtol=1e-4, atol=1e-6)


def test_imagenet_normalisation_is_xclips_0_255_one():
    """X-CLIP normalises 0-255 pixels with ImageNet's mean/std x 255; the config stores the 0-1 scale."""
    pixels = torch.rand(3, 4, 4) * 255
    mean255, std255 = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    config = VideoModelConfig(model="tiny", input_mean=fusion.IMAGENET_MEAN, input_std=fusion.IMAGENET_STD)
    ours = (pixels / 255 - torch.tensor(config.input_mean)[:, None, None]) / torch.tensor(config.input_std)[:, None, None]
    torch.testing.assert_close(ours, (pixels - mean255[:, None, None]) / std255[:, None, None])
