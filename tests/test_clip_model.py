from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clip
import fusion
from clip.model import CLIP, config_from_state_dict, count_parameters

TINY = fusion.BACKBONES["tiny"].clip_config

# Parameter counts of OpenAI's released state dicts (all tensors, the integer extras excluded).
KNOWN_PARAMETERS = {"ViT-B/32": 151_277_313, "ViT-B/16": 149_620_737, "ViT-L/14": 427_616_513}


def tiny_model(seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    model = CLIP(TINY).eval()
    with torch.no_grad():  # random values everywhere, including the biases OpenAI's init leaves at zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def example_inputs(n_images: int = 2):
    torch.manual_seed(1)
    images = torch.randn(n_images, 3, 112, 112)
    tokens = clip.tokenize(["a photo of abseiling", "Apply Eye Makeup", "passing American football (in game)"])
    return images, tokens


@pytest.mark.parametrize("name", list(KNOWN_PARAMETERS))
def test_parameter_counts_on_meta(name):
    with torch.device("meta"):
        model = CLIP(clip.RELEASED[name].config)
    state_dict = model.state_dict()
    assert count_parameters(state_dict) == KNOWN_PARAMETERS[name]
    # build_model's shape inference recovers the configuration from the tensors alone.
    assert config_from_state_dict(state_dict) == clip.RELEASED[name].config


def test_state_dict_names_are_openais():
    keys = set(tiny_model().state_dict())
    for key in ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
                "visual.transformer.resblocks.0.attn.in_proj_weight", "visual.transformer.resblocks.3.mlp.c_proj.bias",
                "visual.ln_post.bias", "visual.proj", "token_embedding.weight", "positional_embedding",
                "transformer.resblocks.1.ln_2.weight", "ln_final.weight", "text_projection", "logit_scale"]:
        assert key in keys
    assert "causal_mask" not in keys  # derived from the context length, not a weight


def test_shapes_and_dtypes():
    model = tiny_model()
    images, tokens = example_inputs()
    with torch.no_grad():
        embedding, patches = model.encode_image(images, return_tokens=True)
        text = model.encode_text(tokens)
        per_image, per_text = model(images, tokens)
    assert embedding.shape == (2, 128) and embedding.dtype == torch.float32
    assert patches.shape == (2, (112 // 16) ** 2, 128)
    assert text.shape == (3, 128) and text.dtype == torch.float32
    assert per_image.shape == (2, 3) and torch.equal(per_text, per_image.t())
    # Another resolution: the trained position grid is resized to the new patch grid.
    with torch.no_grad():
        _, patches = model.encode_image(torch.randn(1, 3, 96, 128), return_tokens=True)
    assert patches.shape == (1, 6 * 8, 128)


def test_build_model_from_openai_style_state_dict():
    original = tiny_model()
    state_dict = original.state_dict()
    # OpenAI's archives carry these integer entries next to the weights.
    state_dict.update(input_resolution=torch.tensor(112), context_length=torch.tensor(77),
                      vocab_size=torch.tensor(49408))
    model = clip.build_model(state_dict)
    assert model.config == TINY
    assert not model.training
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_build_model_names_missing_and_unexpected_keys():
    state_dict = tiny_model().state_dict()
    del state_dict["ln_final.bias"]
    with pytest.raises(ValueError, match=r"1 missing key\(s\): ln_final.bias"):
        clip.build_model(state_dict)
    state_dict = tiny_model().state_dict()
    state_dict["visual.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\): visual.extra_head.weight"):
        clip.build_model(state_dict)


# A from-scratch CLIP forward in OpenAI's original layout: sequence-first [L, N, D] tensors through
# torch.nn.MultiheadAttention, explicit layer norms and QuickGELU. Only the weights are shared.
def reference_transformer(blocks, x, heads, mask=None):
    x = x.permute(1, 0, 2)  # [N, L, D] -> [L, N, D]
    width = x.shape[-1]
    for block in blocks:
        attention = nn.MultiheadAttention(width, heads)
        attention.load_state_dict(block.attn.state_dict())
        y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, 1e-5)
        x = x + attention(y, y, y, need_weights=False, attn_mask=mask)[0]
        y = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, 1e-5)
        hidden = F.linear(y, block.mlp.c_fc.weight, block.mlp.c_fc.bias)
        hidden = hidden * torch.sigmoid(1.702 * hidden)
        x = x + F.linear(hidden, block.mlp.c_proj.weight, block.mlp.c_proj.bias)
    return x.permute(1, 0, 2)


def reference_encode_image(model, images):
    visual = model.visual
    width = visual.conv1.weight.shape[0]
    x = F.conv2d(images, visual.conv1.weight, stride=visual.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, width), x], dim=1) + visual.positional_embedding
    x = F.layer_norm(x, (width,), visual.ln_pre.weight, visual.ln_pre.bias, 1e-5)
    x = reference_transformer(visual.transformer.resblocks, x, model.config.vision_heads)
    return F.layer_norm(x[:, 0], (width,), visual.ln_post.weight, visual.ln_post.bias, 1e-5) @ visual.proj


def reference_encode_text(model, tokens):
    width = model.config.transformer_width
    mask = torch.full((77, 77), float("-inf")).triu(1)
    x = model.token_embedding.weight[tokens] + model.positional_embedding
    x = reference_transformer(model.transformer.resblocks, x, model.config.transformer_heads, mask)
    x = F.layer_norm(x, (width,), model.ln_final.weight, model.ln_final.bias, 1e-5)
    end_of_text = (tokens == 49407).int().argmax(dim=-1)
    return x[torch.arange(len(tokens)), end_of_text] @ model.text_projection


def test_forward_matches_multihead_attention_reference():
    model = tiny_model()
    images, tokens = example_inputs()
    with torch.no_grad():
        image_ref, text_ref = reference_encode_image(model, images), reference_encode_text(model, tokens)
        image, text = model.encode_image(images), model.encode_text(tokens)
        logits, _ = model(images, tokens)
    assert (image - image_ref).abs().max() < 1e-5
    assert (text - text_ref).abs().max() < 1e-5
    logits_ref = model.logit_scale.exp() * F.normalize(image_ref, dim=-1) @ F.normalize(text_ref, dim=-1).t()
    assert (logits - logits_ref).abs().max() < 1e-4  # logits are scaled by 1/0.07
    # The causal mask matters: the reference without it disagrees.
    with torch.no_grad():
        x = model.token_embedding.weight[tokens] + model.positional_embedding
        unmasked = reference_transformer(model.transformer.resblocks, x, 2)
        masked = reference_transformer(model.transformer.resblocks, x, 2, torch.full((77, 77), float("-inf")).triu(1))
    assert (unmasked - masked).abs().max() > 1e-3


def test_gradient_checkpointing_gives_the_same_gradients():
    images, tokens = example_inputs()
    # A 1000-token vocabulary: tiny's 49,408-row embedding gradient would only make this slow.
    config = replace(TINY, vocab_size=1000)
    tokens = torch.where(tokens == 49407, 999, tokens % 999)  # the end token stays the largest id
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = CLIP(config).train()
        model.set_grad_checkpointing(checkpointing)
        logits, _ = model(images, tokens)
        F.cross_entropy(logits, torch.tensor([0, 2])).backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters()))
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert any(g.abs().max() > 0 for g in plain.values())


def test_bf16_autocast():
    model = tiny_model()
    images, tokens = example_inputs()
    with torch.no_grad():
        reference = model.encode_image(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            image, text = model.encode_image(images), model.encode_text(tokens)
    assert image.dtype == torch.bfloat16 and text.dtype == torch.bfloat16
    assert model.dtype == torch.float32  # weights are not converted
    assert F.cosine_similarity(image.float(), reference).min() > 0.99

