"""Hugging Face transformers' XCLIPModel / CLIPModel, both ways. Tiny random models are built by
transformers itself from a config (no download), saved as transformers saves them, converted with
``mbgf convert DIR`` and compared with transformers' own forward; mbgf models are written with
``mbgf export --format hf`` and loaded back with ``from_pretrained``."""

import json

import numpy as np
import pytest
import reference_models as ref
import torch
import transformers
from transformers import CLIPConfig, CLIPModel, XCLIPConfig, XCLIPModel
from typer.testing import CliRunner

import fusion
from mbgf_cli import interop
from mbgf_cli.app import app, main
from mbgf_cli.checkpoint import load_checkpoint, save_checkpoint
from mbgf_cli.data.transforms import normalize
from mbgf_cli.errors import UserError
from mbgf_cli.interop import huggingface

DIMS = ref.TinyDims()
TOLERANCE = 1e-4  # relative: max |mbgf - transformers| / max |transformers|
BATCH, FRAMES, CLASSES = 2, 8, 5

# mbgf's tiny backbone in transformers' terms
TEXT = dict(vocab_size=DIMS.vocab, hidden_size=DIMS.text_width, intermediate_size=4 * DIMS.text_width,
            num_hidden_layers=DIMS.text_layers, num_attention_heads=DIMS.text_width // 64,
            max_position_embeddings=DIMS.context)
VISION = dict(hidden_size=DIMS.vision_width, intermediate_size=4 * DIMS.vision_width, num_hidden_layers=DIMS.vision_layers,
              num_attention_heads=DIMS.vision_width // 64, image_size=DIMS.image, patch_size=DIMS.patch)
XCLIP_VISION = dict(VISION, num_frames=FRAMES, mit_hidden_size=DIMS.embed, mit_intermediate_size=4 * DIMS.embed,
                    mit_num_attention_heads=DIMS.embed // 64)

pytestmark = pytest.mark.usefixtures("one_thread")



def mbgf(*args) -> str:
    """Run an mbgf command that must succeed; its output."""
    run = CliRunner().invoke(app, [str(a) for a in args])
    assert run.exit_code == 0, run.output
    return run.output


def image_features(model, images):
    out = model.get_image_features(pixel_values=images)
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 returns an output object


@pytest.fixture(scope="module")
def inputs():
    return ref.random_clips(BATCH, FRAMES, DIMS), ref.random_tokens(CLASSES, DIMS)


@pytest.fixture(scope="module")
def xclip_model():
    config = XCLIPConfig(text_config=TEXT, vision_config=XCLIP_VISION, projection_dim=DIMS.embed,
                         prompt_num_attention_heads=DIMS.embed // 64)
    return ref.randomized(XCLIPModel(config), seed=1)


@pytest.fixture(scope="module")
def clip_model():
    return ref.randomized(CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=DIMS.embed)), seed=2)


@pytest.fixture(scope="module")
def xclip_logits(xclip_model, inputs):
    clips, tokens = inputs
    with torch.no_grad():
        return xclip_model(input_ids=tokens, pixel_values=clips).logits_per_video


@pytest.fixture(scope="module")
def saved(xclip_model, clip_model, tmp_path_factory):
    """The tiny models as transformers saves them."""
    root = tmp_path_factory.mktemp("hf")
    xclip_model.save_pretrained(root / "xclip")                            # config.json + model.safetensors
    xclip_model.save_pretrained(root / "xclip-sharded", max_shard_size="2MB")  # + model.safetensors.index.json
    # transformers 4's save_pretrained(safe_serialization=False): torch.save of the state dict as
    # pytorch_model.bin; before 4.31 with the position_ids buffers, which were persistent then.
    xclip_model.config.save_pretrained(root / "xclip-bin")
    state = xclip_model.state_dict()
    state["text_model.embeddings.position_ids"] = torch.arange(DIMS.context)[None]
    state["vision_model.embeddings.position_ids"] = torch.arange((DIMS.image // DIMS.patch) ** 2 + 1)[None]
    torch.save(state, root / "xclip-bin" / "pytorch_model.bin")
    clip_model.save_pretrained(root / "clip")
    return root


# ------------------------------------------------------------------------------ transformers -> mbgf


@pytest.mark.parametrize("layout", ["xclip", "xclip-sharded", "xclip-bin"])
@torch.no_grad()
def test_xclip_model_directories_give_transformers_logits(saved, inputs, xclip_logits, layout, tmp_path):
    directory = saved / layout
    if layout == "xclip-bin":  # transformers itself reads this directory: it is a real one
        again = XCLIPModel.from_pretrained(directory).eval()
        assert torch.allclose(again(input_ids=inputs[1], pixel_values=inputs[0]).logits_per_video, xclip_logits)
    elif layout == "xclip-sharded":
        assert (directory / "model.safetensors.index.json").is_file()
    printed = mbgf("convert", directory, "-o", tmp_path / "out")
    weights = {"xclip": "model.safetensors", "xclip-bin": "pytorch_model.bin"}.get(layout, "model.safetensors.index.json")
    assert f"detected: Hugging Face XCLIPModel directory (config.json, {weights}" in printed and "8 frames" in printed

    model, meta = load_checkpoint(tmp_path / "out")
    config = meta["config"]
    assert (config["variant"], config["model"], config["frames"], config["input_size"]) == ("xclip", "tiny", 8, 48)
    assert config["xclip_mit_layers"] == 1 and config["xclip_prompt_layers"] == 2 and not config["mbgf"]
    assert meta["prompt_templates"] == ["{}"] and meta["source"]["transformers_class"] == "XCLIPModel"
    clips, tokens = inputs
    assert ref.relative_error(model(clips, tokens), xclip_logits) < TOLERANCE


@torch.no_grad()
def test_the_comparison_can_fail(saved, inputs, xclip_logits):
    """q and k swapped in one vision block (a mapping mistake the q/k/v split could make) is caught."""
    model, _ = interop.load_any_checkpoint(saved / "xclip")
    w = model.visual.transformer.resblocks[0].attn.in_proj_weight
    w.copy_(torch.cat([w[DIMS.vision_width:2 * DIMS.vision_width], w[:DIMS.vision_width], w[2 * DIMS.vision_width:]]))
    assert ref.relative_error(model(*inputs), xclip_logits) > 100 * TOLERANCE


@torch.no_grad()
def test_clip_model_directory_gives_transformers_logits_per_frame_and_per_video(saved, clip_model, inputs, tmp_path):
    clips, tokens = inputs
    output, meta = interop.convert_checkpoint(saved / "clip", tmp_path / "out")
    model, meta = load_checkpoint(output)
    assert meta["config"]["variant"] == "clip" and meta["config"]["frames"] == interop.DEFAULT_FRAMES
    assert meta["source"]["detected"].startswith("Hugging Face CLIPModel directory (config.json, model.safetensors")
    assert meta["config"]["input_mean"] == list(fusion.CLIP_MEAN)  # no preprocessor_config.json: CLIP's
    # One frame: CLIPModel's own logits_per_image.
    expected = clip_model(input_ids=tokens, pixel_values=clips[:, 0]).logits_per_image
    assert ref.relative_error(model(clips[:, :1], tokens), expected) < TOLERANCE
    # A clip: CLIPModel's image features averaged over the frames (mean pooling).
    video = image_features(clip_model, clips.flatten(0, 1)).view(BATCH, FRAMES, -1).mean(1)
    text = clip_model.get_text_features(input_ids=tokens)
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    expected = clip_model.logit_scale.exp() * ref.normalize(video) @ ref.normalize(text).t()
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


def test_the_processors_normalisation_is_recorded_and_reproduced(saved, tmp_path):
    """transformers' X-CLIP processor (VideoMAE's, mean/std 0.5 unless its config says otherwise) is
    what a Hub directory's preprocessor_config.json describes: mbgf records it and normalises the same."""
    directory = tmp_path / "with-processor"
    directory.mkdir()
    for file in ("config.json", "model.safetensors"):
        (directory / file).write_bytes((saved / "xclip" / file).read_bytes())
    processor = transformers.VideoMAEImageProcessor(do_resize=False, do_center_crop=False)
    processor.save_pretrained(directory)
    _, config, meta = interop.convert(directory)
    assert config.input_mean == (0.5, 0.5, 0.5) and config.input_std == (0.5, 0.5, 0.5)
    assert "normalisation: preprocessor_config.json" in meta["source"]["detected"]
    frames = [np.random.default_rng(i).integers(0, 256, (DIMS.image, DIMS.image, 3), dtype=np.uint8) for i in range(4)]
    expected = processor(frames, return_tensors="pt").pixel_values[0]
    ours = normalize(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), config.input_mean, config.input_std)
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("change, key", [
    ({"text_config": dict(TEXT, hidden_act="gelu")}, "text_config.hidden_act is 'gelu'"),
    ({"vision_config": dict(VISION, layer_norm_eps=1e-6)}, "vision_config.layer_norm_eps is 1e-06"),
    ({"text_config": dict(TEXT, eos_token_id=5)}, "text_config.eos_token_id is 5"),
])
def test_what_mbgf_cannot_compute_is_refused_naming_the_config_key(change, key, tmp_path):
    config = CLIPConfig(**{"text_config": TEXT, "vision_config": VISION, "projection_dim": DIMS.embed, **change})
    CLIPModel(config).save_pretrained(tmp_path / "model")
    with pytest.raises(UserError) as error:
        interop.convert(tmp_path / "model")
    message = str(error.value)
    assert message.startswith(str(tmp_path / "model" / "config.json")) and key in message and "\n" not in message


def test_weights_without_their_config_and_other_models_are_named(saved, tmp_path):
    with pytest.raises(UserError, match="Hugging Face weights without their config.json; give the model's directory"):
        lone = tmp_path / "pytorch_model.bin"
        lone.write_bytes((saved / "xclip-bin" / "pytorch_model.bin").read_bytes())
        interop.convert(lone)
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64).save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "model.safetensors").write_bytes((saved / "clip" / "model.safetensors").read_bytes())
    with pytest.raises(UserError, match=r"model_type 'bert'; mbgf reads transformers' XCLIPModel and CLIPModel"):
        interop.convert(tmp_path / "bert")


# ------------------------------------------------------------------------------ mbgf -> transformers


@torch.no_grad()
def test_export_writes_what_from_pretrained_loads_with_the_same_logits(saved, inputs, tmp_path):
    clips, tokens = inputs
    for name, cls in (("xclip", XCLIPModel), ("clip", CLIPModel)):
        converted, _ = interop.convert_checkpoint(saved / name, tmp_path / f"mbgf-{name}")
        model, meta = load_checkpoint(converted)
        printed = mbgf("export", converted, "--format", "hf", "-o", tmp_path / f"hf-{name}")
        assert f"transformers {cls.__name__}" in printed
        loaded, info = cls.from_pretrained(tmp_path / f"hf-{name}", output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        loaded.eval()
        if name == "xclip":
            theirs, ours = loaded(input_ids=tokens, pixel_values=clips).logits_per_video, model(clips, tokens)
        else:
            theirs, ours = loaded(input_ids=tokens, pixel_values=clips[:, 0]).logits_per_image, model(clips[:, :1], tokens)
        assert ref.relative_error(ours, theirs) < TOLERANCE
        processor = json.loads((tmp_path / f"hf-{name}" / "preprocessor_config.json").read_text())
        assert processor["image_mean"] == meta["config"]["input_mean"]
        # ... and the directory converts back to the very same weights.
        again, _ = interop.load_any_checkpoint(tmp_path / f"hf-{name}")
        assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_export_refuses_mbgf_and_actionclip_models_in_one_line(tmp_path, capsys):
    for variant, mbgf, reason in (("xclip", True, "has MBGF weights, and transformers has no MBGF model"),
                                  ("actionclip", False, "transformers has no ActionCLIP model")):
        config = fusion.VideoModelConfig(model="tiny", variant=variant, mbgf=mbgf, frames=4, input_size=32)
        checkpoint = save_checkpoint(tmp_path / variant, fusion.build_from_config(config),
                                     {"config": config.to_dict(), "class_names": []})
        with pytest.raises(SystemExit) as exit_:
            main(["export", str(checkpoint), "-o", str(tmp_path / f"hf-{variant}")])
        assert exit_.value.code == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert reason in line and str(checkpoint) in line
        assert not (tmp_path / f"hf-{variant}").exists()


def test_export_never_replaces_a_non_empty_directory_without_overwrite(saved, tmp_path):
    output = tmp_path / "hf"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"not empty and not written by `mbgf export`.*--overwrite"):
        interop.export_checkpoint(saved / "clip", output)
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    interop.export_checkpoint(saved / "clip", output, overwrite=True)  # writes beside the user's file
    assert sorted(p.name for p in output.iterdir()) == [".mbgf-output.json", "config.json", "model.safetensors",
                                                        "notes.txt", "preprocessor_config.json"]
    assert (output / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no temporary directory left


def test_the_key_mapping_is_its_own_inverse():
    for variant in ("clip", "xclip"):
        state = fusion.build_video_model("tiny", variant, mbgf=False, frames=FRAMES, input_size=DIMS.image).state_dict()
        back = huggingface.from_hf(huggingface.to_hf(state, variant), variant)
        assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())
