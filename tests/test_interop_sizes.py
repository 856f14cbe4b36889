"""CLIPs of sizes mbgf has no name for (any width, depth, heads, MLP width, patch, resolution,
activation): transformers' own random CLIPModel / XCLIPModel of such sizes, saved with
``save_pretrained``, and OpenAI-format files, are converted to ``custom`` backbones whose architecture
the checkpoint records, and compute what their producers compute (≤ 1e-4 relative)."""

import csv
from pathlib import Path

import pytest
import reference_models as ref
import torch
import transformers

import clip
import fusion
from mbgf_cli import interop
from mbgf_cli.checkpoint import load_checkpoint, read_meta
from tests.test_eval_foreign import assert_transformers_agree
from tests.test_train_support import run_cli

TOLERANCE = 1e-4  # relative: max |mbgf - producer| / max |producer|
BATCH, FRAMES, CLASSES = 2, 4, 5

pytestmark = pytest.mark.usefixtures("one_thread")

# transformers CLIPModel configs of sizes no mbgf backbone has, each time with the text pooled at the
# highest id (eos_token_id = vocab - 1, as OpenAI's tokenizer puts it last).
CLIP_SIZES = {
    # vision 128 wide, 2 layers, patch 16, 64 px; text 96 wide with 3 heads (32 per head), MLP 200
    "w128-p16-64px": dict(
        text_config=dict(vocab_size=1000, eos_token_id=999, hidden_size=96, intermediate_size=200, num_hidden_layers=2,
                         num_attention_heads=3, max_position_embeddings=16),
        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=48),
    # OpenCLIP-like: exact GELU, vision heads of 24 channels, patch 8 at 40 px, text 64 wide with 4 heads
    "gelu-w96-p8-40px": dict(
        text_config=dict(vocab_size=800, eos_token_id=799, hidden_size=64, intermediate_size=256, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=12, hidden_act="gelu"),
        vision_config=dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                           image_size=40, patch_size=8, hidden_act="gelu"),
        projection_dim=32),
}



def tokens_for(vocab: int, context: int, count: int = CLASSES):
    """Start token, words, end-of-text (the highest id), padding: tokenize()'s shape at this vocabulary."""
    return ref.random_tokens(count, ref.TinyDims(vocab=vocab, context=context), length=context)


def features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # transformers 5: an output object


@pytest.mark.parametrize("size", list(CLIP_SIZES))
@torch.no_grad()
def test_a_clip_model_of_any_size_converts_records_its_architecture_and_computes_the_same(size, tmp_path):
    values = CLIP_SIZES[size]
    hf_model = ref.randomized(transformers.CLIPModel(transformers.CLIPConfig(**values)), seed=7)
    hf_model.save_pretrained(tmp_path / "hf")
    text, vision = values["text_config"], values["vision_config"]
    image = vision["image_size"]
    images = torch.randn(BATCH * FRAMES, 3, image, image, generator=torch.Generator().manual_seed(1))
    tokens = tokens_for(text["vocab_size"], text["max_position_embeddings"])

    code, _, stderr = run_cli(["convert", tmp_path / "hf", "-o", tmp_path / "mbgf"])
    assert code == 0, stderr
    model, meta = load_checkpoint(tmp_path / "mbgf")  # rebuilt from the recorded config alone
    config = meta["config"]
    assert config["model"] == "custom" and config["input_size"] == image
    architecture = config["architecture"]
    assert (architecture["vision_width"], architecture["vision_layers"], architecture["vision_heads"],
            architecture["vision_mlp_width"], architecture["vision_patch_size"], architecture["image_resolution"]) == \
        (vision["hidden_size"], vision["num_hidden_layers"], vision["num_attention_heads"],
         vision["intermediate_size"], vision["patch_size"], image)
    assert (architecture["transformer_width"], architecture["transformer_heads"], architecture["transformer_mlp_width"],
            architecture["activation"]) == (text["hidden_size"], text["num_attention_heads"],
                                            text["intermediate_size"], vision.get("hidden_act", "quick_gelu"))

    # Image and text embeddings, and CLIPModel's logits (one frame per clip), as transformers computes them.
    ours_image = model.visual(images)
    assert ref.relative_error(ours_image, features(hf_model.get_image_features(pixel_values=images))) < TOLERANCE
    ours_text = model.encode_text(tokens)
    assert ref.relative_error(ours_text, features(hf_model.get_text_features(input_ids=tokens))) < TOLERANCE
    clips = images.view(BATCH, FRAMES, 3, image, image)
    expected = hf_model(input_ids=tokens, pixel_values=clips[:, 0]).logits_per_image
    assert ref.relative_error(model(clips[:, :1], tokens), expected) < TOLERANCE
    # A clip: the frames' image features averaged (the clip variant), then CLIP's scaled cosine.
    video = features(hf_model.get_image_features(pixel_values=images)).view(BATCH, FRAMES, -1).mean(1)
    text_features = features(hf_model.get_text_features(input_ids=tokens))
    expected = hf_model.logit_scale.exp() * ref.normalize(video) @ ref.normalize(text_features).t()
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


@torch.no_grad()
def test_the_comparison_can_fail(tmp_path):
    """Heads taken as width / 64 (what mbgf assumed before) would not compute transformers' numbers."""
    values = CLIP_SIZES["w128-p16-64px"]
    hf_model = ref.randomized(transformers.CLIPModel(transformers.CLIPConfig(**values)), seed=7)
    hf_model.save_pretrained(tmp_path / "hf")
    model, _ = interop.load_any_checkpoint(tmp_path / "hf")
    for block in model.transformer.resblocks:
        block.attn.heads = 1  # 96 / 64
    tokens = tokens_for(1000, 16)
    expected = features(hf_model.get_text_features(input_ids=tokens))
    assert ref.relative_error(model.encode_text(tokens), expected) > 100 * TOLERANCE


# ------------------------------------------------------------------------------ X-CLIP of any size

@pytest.fixture(scope="module")
def custom_xclip(tmp_path_factory):
    """transformers' XCLIPModel with a vision tower 96 wide with 3 heads, 2 layers, MLP 192, patch 16 at
    32 px, and a 64-wide text tower: saved as transformers saves it, with the Hub's X-CLIP processor."""
    text = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2)
    vision = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3, image_size=32,
                  patch_size=16, num_frames=FRAMES, mit_hidden_size=64, mit_intermediate_size=256,
                  mit_num_attention_heads=1)
    config = transformers.XCLIPConfig(text_config=text, vision_config=vision, projection_dim=64,
                                      prompt_num_attention_heads=1)
    hf_model = ref.randomized(transformers.XCLIPModel(config), seed=9)
    directory = tmp_path_factory.mktemp("xclip") / "xclip-custom"
    hf_model.save_pretrained(directory)
    transformers.VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}) \
        .save_pretrained(directory)
    return hf_model, directory


@torch.no_grad()
def test_an_xclip_model_of_any_size_gives_transformers_logits(custom_xclip, tmp_path):
    hf_model, directory = custom_xclip
    clips = torch.randn(BATCH, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    tokens = tokens_for(49408, 77)
    expected = hf_model(input_ids=tokens, pixel_values=clips).logits_per_video
    interop.convert_checkpoint(directory, tmp_path / "mbgf")
    model, meta = load_checkpoint(tmp_path / "mbgf")
    assert meta["config"]["model"] == "custom" and meta["config"]["architecture"]["vision_heads"] == 3
    assert model.config.name == "X-CLIP-W96-L2/16@32"
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


def test_eval_on_a_converted_xclip_of_any_size_predicts_as_transformers(custom_xclip, toy_dataset, tmp_path, capsys):
    """convert -> eval: the recorded architecture rebuilds the model, whose predictions on the toy
    dataset's videos are transformers' own."""
    hf_model, directory = custom_xclip
    code, _, stderr = run_cli(["convert", directory, "-o", tmp_path / "ckpt"], capsys)
    assert code == 0, stderr
    predictions = tmp_path / "predictions.csv"
    code, _, stderr = run_cli(["eval", "--checkpoint", tmp_path / "ckpt", "--root", toy_dataset, "--workers", "0",
                               "--amp", "off", "--predictions", predictions, "--json"], capsys)
    assert code == 0, stderr
    rows = list(csv.DictReader(open(predictions)))
    predicted = [int(row["predicted"]) for row in rows]
    probability = torch.tensor([float(row["probability"]) for row in rows])

    assert_transformers_agree(hf_model, toy_dataset, FRAMES, predicted, probability)


# ------------------------------------------------------------------------------ OpenAI's format, any size

@torch.no_grad()
def test_an_openai_format_file_of_any_size_loads_and_converts(tmp_path):
    """A state dict with OpenAI's names whose shapes are no released model's (vision 128 wide, 3 layers,
    MLP 320, patch 8 at 40 px; text 64 wide, MLP 100): as OpenAI's build_model, every size is read from
    the shapes (heads: width / 64)."""
    architecture = clip.CLIPConfig(embed_dim=40, image_resolution=40, vision_layers=3, vision_width=128,
                                   vision_patch_size=8, context_length=20, vocab_size=600, transformer_width=64,
                                   transformer_heads=1, transformer_layers=2, vision_mlp_width=320,
                                   transformer_mlp_width=100)
    torch.manual_seed(0)
    original = ref.randomized(clip.CLIP(architecture), seed=3)
    torch.save(original.state_dict(), tmp_path / "ViT-custom.pt")
    assert clip.load(tmp_path / "ViT-custom.pt").config == architecture

    code, _, stderr = run_cli(["convert", tmp_path / "ViT-custom.pt", "-o", tmp_path / "mbgf"])
    assert code == 0, stderr
    assert read_meta(tmp_path / "mbgf")["config"]["architecture"] == fusion.VideoModelConfig(
        model="custom", architecture=architecture).to_dict()["architecture"]
    model, _ = load_checkpoint(tmp_path / "mbgf")
    clips = torch.randn(BATCH, FRAMES, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    tokens = tokens_for(600, 20)
    video = original.encode_image(clips.flatten(0, 1)).view(BATCH, FRAMES, -1).mean(1)
    expected = original.logit_scale.exp() * ref.normalize(video) @ ref.normalize(original.encode_text(tokens)).t()
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


@torch.no_grad()
def test_a_custom_backbone_exports_to_transformers_and_back(tmp_path):
    """mbgf export writes the custom architecture (heads, MLP widths, GELU) into transformers' config:
    CLIPModel.from_pretrained loads every weight and computes the same logits."""
    values = CLIP_SIZES["gelu-w96-p8-40px"]
    ref.randomized(transformers.CLIPModel(transformers.CLIPConfig(**values)), seed=11).save_pretrained(tmp_path / "hf")
    interop.convert_checkpoint(tmp_path / "hf", tmp_path / "mbgf")
    model, _ = load_checkpoint(tmp_path / "mbgf")
    code, _, stderr = run_cli(["export", tmp_path / "mbgf", "--format", "hf", "-o", tmp_path / "back"])
    assert code == 0, stderr
    loaded, info = transformers.CLIPModel.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.config.vision_config.hidden_act == "gelu" and loaded.config.vision_config.intermediate_size == 160
    images = torch.randn(BATCH, 1, 3, 40, 40, generator=torch.Generator().manual_seed(6))
    tokens = tokens_for(800, 12)
    expected = loaded.eval()(input_ids=tokens, pixel_values=images[:, 0]).logits_per_image
    assert ref.relative_error(model(images, tokens), expected) < TOLERANCE


def test_predict_zero_shot_from_an_openai_format_file_of_any_size(tmp_path, capsys):
    """``mbgf predict --pretrained FILE --classes ...`` with a CLIP of no released size (vision 96 wide,
    patch 8 at 40 px; text 64 wide over OpenAI's vocabulary, context 20): the registry builds it from the
    file's shapes (before, only a released size was found) and every video gets both classes."""
    from tests.predict_support import colour_frames
    from tests.videos import write_video

    architecture = clip.CLIPConfig(embed_dim=32, image_resolution=40, vision_layers=2, vision_width=96,
                                   vision_patch_size=8, context_length=20, vocab_size=49408, transformer_width=64,
                                   transformer_heads=1, transformer_layers=1)
    torch.manual_seed(0)
    original = ref.randomized(clip.CLIP(architecture), seed=4)
    torch.save(original.state_dict(), tmp_path / "ViT-odd.pt")
    for k in range(2):
        write_video(tmp_path / "videos" / f"v{k}.mp4", frames=colour_frames(k, seed=k))
    args = ["predict", tmp_path / "videos", "--pretrained", tmp_path / "ViT-odd.pt", "--classes", "a, b",
            "--frames", "2", "--input-size", "40", "--workers", "0", "--amp", "off", "--json"]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    import json

    rows = json.loads(stdout)["videos"]
    assert [Path(row["video"]).name for row in rows] == ["v0.mp4", "v1.mp4"]
    for row in rows:
        assert {r["label"] for r in row["top"]} == {"a", "b"}
        assert sum(r["probability"] for r in row["top"]) == pytest.approx(1.0, abs=1e-5)


@torch.no_grad()
def test_train_model_custom_takes_the_clip_of_a_pretrained_file_of_any_size(tmp_path):
    """``mbgf train --model custom --pretrained FILE`` (as fewshot's other variants start from a custom
    checkpoint's CLIP): the file's architecture and weights, not a named backbone's."""
    from mbgf_cli import training
    from mbgf_cli.train_config import TrainConfig, resolve_config

    architecture = clip.CLIPConfig(embed_dim=32, image_resolution=40, vision_layers=2, vision_width=96,
                                   vision_patch_size=8, context_length=20, vocab_size=49408, transformer_width=64,
                                   transformer_heads=1, transformer_layers=1)
    original = ref.randomized(clip.CLIP(architecture), seed=5)
    torch.save(original.state_dict(), tmp_path / "ViT-odd.pt")
    cfg = resolve_config(TrainConfig(dataset="synthetic", model="custom", pretrained=str(tmp_path / "ViT-odd.pt"),
                                     variant="clip", mbgf=False, frames=2, input_size=40))
    model = training.build_model(cfg, torch.device("cpu"))
    assert model.clip_config == architecture and model.config.model == "custom"
    assert torch.equal(model.visual.conv1.weight, original.visual.conv1.weight)
    assert torch.equal(model.token_embedding.weight, original.token_embedding.weight)
