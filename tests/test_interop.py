"""Published checkpoints -> mbgf: a random tiny model written in each foreign format, converted with
``mbgf convert`` / mbgf_cli.interop, loaded with load_checkpoint, and compared with a from-scratch
computation of the published forward pass (tests/reference_models.py)."""

from pathlib import Path

import pytest
import reference_models as ref
import torch
from typer.testing import CliRunner
from yacs.config import CfgNode

import fusion
from mbgf_cli import interop
from mbgf_cli.app import app, main
from mbgf_cli.checkpoint import load_checkpoint, read_meta
from mbgf_cli.data.transforms import normalize
from mbgf_cli.errors import UserError

DIMS = ref.TinyDims()
TOLERANCE = 1e-4  # relative: max |mbgf - published| / max |published|
BATCH, FRAMES, CLASSES, TEMPLATES = 2, 8, 5, 3
DATA = Path(__file__).resolve().parent / "data"


def xclip_config(frames=FRAMES, arch="ViT-B/16"):
    """A real yacs CfgNode as X-CLIP's main.py saves it: config.py's defaults merged with a
    configs/k400/*.yaml file, frozen."""
    config = CfgNode()
    config.DATA = CfgNode()
    config.DATA.NUM_FRAMES, config.DATA.INPUT_SIZE, config.DATA.DATASET = frames, DIMS.image, "kinetics400"
    config.MODEL = CfgNode()
    config.MODEL.ARCH, config.MODEL.DROP_PATH_RATE, config.MODEL.PRETRAINED = arch, 0.0, None
    config.TRAIN = CfgNode()
    config.TRAIN.LR, config.TRAIN.EPOCHS = 8e-6, 30
    config.freeze()
    return config


def save_xclip_checkpoint(weights, path, config, protocol=None, epoch=29, max_accuracy=83.25):
    """X-CLIP's utils/tools.py epoch_saving: the dict it writes, with torch.save (protocol 2 by default)."""
    extra = {} if protocol is None else {"pickle_protocol": protocol}
    torch.save({"model": weights, "optimizer": {"state": {}, "param_groups": []},
                "lr_scheduler": {"t_initial": 30, "warmup_lr_init": 0}, "max_accuracy": max_accuracy,
                "epoch": epoch, "config": config}, path, **extra)


# ------------------------------------------------------------------------------ foreign files


def actionclip_fp16(state):
    """ActionCLIP saves CLIP after clip.model.convert_weights: conv, linear and attention weights and
    the projections in fp16, the rest (LayerNorms, embeddings) in fp32."""
    half = ("conv1", "in_proj", "out_proj", "c_fc", "c_proj", "visual.proj", "text_projection")
    return {k: v.half() if any(h in k for h in half) else v for k, v in state.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    out = {}

    openai = ref.openai_archive_state_dict(DIMS, seed=0)
    out["openai"] = root / "ViT-tiny.pt"
    ref.write_torchscript_archive(openai, out["openai"])

    # ActionCLIP: small frame embeddings (as trained CLIP's, variance ~1e-5), so that the head's
    # LayerNorm epsilon (1e-12, not 1e-5) changes the result well beyond the tolerance.
    clip_state = actionclip_fp16(ref.random_clip_state_dict(DIMS, seed=10, embedding_std=0.003))
    head = ref.random_actionclip_head(DIMS, seed=11, position_std=0.003)
    out["actionclip"] = root / "actionclip_tiny_8f.pt"
    torch.save({"epoch": 7, "model_state_dict": clip_state,
                "fusion_model_state_dict": {f"module.{k}": v for k, v in head.items()},
                "optimizer_state_dict": {"state": {0: {"step": 3, "exp_avg": torch.zeros(2)}},
                                         "param_groups": [{"lr": 5e-6, "betas": (0.9, 0.98), "params": [0]}]}},
               out["actionclip"])

    xclip = ref.random_xclip_state_dict(DIMS, frames=FRAMES, seed=20)
    out["xclip"] = root / "xclip_tiny_8f.pth"
    save_xclip_checkpoint(xclip, out["xclip"], xclip_config())

    out["weights"] = {"openai": openai, "actionclip": (clip_state, head), "xclip": xclip}
    return out


@pytest.fixture(scope="module")
def converted(files, tmp_path_factory):
    """Each foreign file through ``mbgf convert`` (auto-detected), then load_checkpoint."""
    root = tmp_path_factory.mktemp("converted")
    result = {}
    for name in ("openai", "actionclip", "xclip"):
        output = root / name
        run = CliRunner().invoke(app, ["convert", str(files[name]), "--output", str(output)])
        assert run.exit_code == 0, run.output
        result[name] = load_checkpoint(output)
        result[f"{name} directory"] = output
    return result


@pytest.fixture(scope="module")
def clips():
    return ref.random_clips(BATCH, FRAMES, DIMS)


def float_weights(state):
    return {k: v.float() for k, v in state.items()}


# ------------------------------------------------------------------------------ equivalence


@torch.no_grad()
def test_openai_archive_gives_the_clip_mean_pooling_baseline(files, converted, clips):
    model, meta = converted["openai"]
    assert meta["config"]["variant"] == "clip" and not meta["config"]["mbgf"]
    assert meta["config"]["input_mean"] == list(fusion.CLIP_MEAN)
    tokens = ref.random_tokens(CLASSES, DIMS)
    expected = ref.clip_mean_pool_logits(float_weights(files["weights"]["openai"]), clips, tokens)
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


@torch.no_grad()
def test_actionclip_gives_the_published_transf_head_and_test_scores(files, converted, clips):
    model, meta = converted["actionclip"]
    clip_state, head = (float_weights(s) for s in files["weights"]["actionclip"])
    assert meta["epoch"] == 7 and meta["source"]["format"] == "actionclip"
    assert meta["config"]["test_logit_scale"] == 100 and meta["config"]["template_eval"] == "mean_softmax"
    assert len(meta["prompt_templates"]) == 16 and "{}" in meta["prompt_templates"]
    assert all(p.dtype == torch.float32 for p in model.parameters())

    expected_video = ref.actionclip_video_embedding(clip_state, head, clips)
    assert ref.relative_error(model.encode_video(clips), expected_video) < TOLERANCE

    # test.py tokenises template-major ([P, K, 77]); mbgf takes class-major [K, P, 77].
    template_tokens = ref.random_tokens(TEMPLATES * CLASSES, DIMS, seed=5).view(TEMPLATES, CLASSES, -1)
    expected = ref.actionclip_test_scores(clip_state, head, clips, template_tokens)
    scores = model(clips, template_tokens.transpose(0, 1)).softmax(-1)
    assert ref.relative_error(scores, expected) < TOLERANCE

    # The comparison can fail: LayerNorm at torch's default eps (1e-5) would be far off here.
    wrong_eps = ref.actionclip_video_embedding(clip_state, head, clips, eps=1e-5)
    assert ref.relative_error(wrong_eps, expected_video) > 100 * TOLERANCE


@torch.no_grad()
def test_xclip_gives_the_published_logits_and_records_imagenet_normalisation(files, converted, clips):
    model, meta = converted["xclip"]
    weights = files["weights"]["xclip"]
    config = meta["config"]
    assert config["variant"] == "xclip" and config["frames"] == FRAMES
    assert config["input_mean"] == list(fusion.IMAGENET_MEAN) and config["input_std"] == list(fusion.IMAGENET_STD)
    assert meta["epoch"] == 29 and meta["metrics"] == {"max_accuracy": 83.25}
    assert meta["prompt_templates"] == ["{}"]  # X-CLIP prompts with the class name alone
    assert meta["source"]["config"]["DATA"]["NUM_FRAMES"] == FRAMES  # the yacs config, as plain JSON
    assert meta["source"]["detected"] == "X-CLIP checkpoint (yacs config, 8 frames)"

    # mbgf's transforms, fed the recorded mean/std, compute X-CLIP's (x - 123.675...) / 58.395... on 0-255.
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    xclip_input = (pixels.float() - torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)) \
        / torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    assert torch.allclose(normalize(pixels, config["input_mean"], config["input_std"]), xclip_input, atol=1e-5)

    tokens = ref.random_tokens(CLASSES, DIMS)
    expected = ref.xclip_logits(weights, clips, tokens)
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE
    # The comparison can fail: without the cross-frame message tokens the logits differ.
    assert ref.relative_error(ref.xclip_logits(weights, clips, tokens, with_messages=False), expected) > 100 * TOLERANCE


# ------------------------------------------------------------------------------ frames


@torch.no_grad()
def test_fewer_frames_slice_xclips_temporal_positions(files, converted):
    clips, tokens = ref.random_clips(BATCH, 4, DIMS, seed=6), ref.random_tokens(CLASSES, DIMS)
    expected = ref.xclip_logits(files["weights"]["xclip"], clips, tokens)  # positions [:, :4]
    # From the foreign file (converted on the fly) and from the 8-frame mbgf checkpoint.
    for source in (files["xclip"], converted["xclip directory"]):
        model, meta = interop.load_any_checkpoint(source, frames=4)
        assert meta["config"]["frames"] == 4 and model.mit.positional_embedding.shape[1] == 4
        assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE
    with pytest.raises(UserError, match="mit.positional_embedding holds temporal positions for 8 frames; cannot use 9"):
        interop.load_any_checkpoint(converted["xclip directory"], frames=9)


@pytest.mark.parametrize("name, frames, limit", [("xclip", 16, 8), ("actionclip", 78, 77)])
def test_more_frames_than_the_positions_hold_are_refused(files, tmp_path, name, frames, limit):
    with pytest.raises(UserError) as error:
        interop.convert_checkpoint(files[name], tmp_path / "out", frames=frames)
    message = str(error.value)
    assert str(files[name]) in message and f"{limit} frames" in message and f"--frames {limit} or fewer" in message
    assert not (tmp_path / "out").exists()


@torch.no_grad()
def test_actionclip_runs_other_frame_counts_like_the_published_head(files, clips):
    # ActionCLIP's table has a row per text position: any T up to 77 uses rows 0..T-1.
    model, meta = interop.load_any_checkpoint(files["actionclip"], frames=16)
    assert meta["config"]["frames"] == 16
    clip_state, head = (float_weights(s) for s in files["weights"]["actionclip"])
    clips16 = ref.random_clips(1, 16, DIMS, seed=7)
    expected = ref.actionclip_video_embedding(clip_state, head, clips16)
    assert ref.relative_error(model.encode_video(clips16), expected) < TOLERANCE


def test_temporal_position_tables_are_all_known():
    """Every parameter whose shape depends on the frame count is one fit_frames slices."""
    for variant in ("clip", "actionclip", "xclip"):
        for mbgf in (False, True):
            with torch.device("meta"):  # shapes only
                shapes = [{k: v.shape for k, v in fusion.build_video_model("tiny", variant, mbgf, frames=t)
                           .state_dict().items()} for t in (8, 4)]
            depends = {k for k in shapes[0] if shapes[0][k] != shapes[1][k]}
            assert depends <= set(interop.TEMPORAL_POSITIONS), (variant, mbgf, depends)


# ------------------------------------------------------------------------------ keys and formats


def test_formats_are_detected_from_the_keys(files):
    from clip import safe_pickle

    for name in ("openai", "actionclip", "xclip"):
        assert interop.detect_format(safe_pickle.load_file(files[name])) == name
    assert interop.detect_format({"optimizer": {}, "epoch": 1}) is None


def test_a_format_that_does_not_fit_is_an_error(files, tmp_path):
    with pytest.raises(UserError, match=r"not in the actionclip format \(found: X-CLIP checkpoint\)"):
        interop.convert(files["xclip"], format="actionclip")


def test_an_unknown_file_names_the_formats_known_and_the_keys_seen(tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"net": {"fc.weight": torch.ones(2, 2)}, "step": 3}, other)
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(other), "--output", str(tmp_path / "out")])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{other}: cannot tell its format" in line
    for title in ("OpenAI CLIP weights", "ActionCLIP checkpoint", "mmaction2 ActionCLIP checkpoint", "X-CLIP checkpoint",
                  "ViFi-CLIP checkpoint", "Hugging Face XCLIPModel/CLIPModel directory"):
        assert title in line
    assert "top-level keys: net, step; weights such as fc.weight" in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ X-CLIP's own files


@pytest.fixture(scope="module")
def xclip_expected(files, clips):
    tokens = ref.random_tokens(CLASSES, DIMS)
    return tokens, ref.xclip_logits(files["weights"]["xclip"], clips, tokens)


@pytest.mark.parametrize("protocol", [None, 2, 4, 5], ids=lambda p: "default" if p is None else f"protocol-{p}")
@torch.no_grad()
def test_xclip_files_as_its_training_code_saves_them_convert_at_every_protocol(files, clips, xclip_expected, tmp_path,
                                                                                protocol):
    """The issue's file: torch.save of X-CLIP's dict with a real yacs CfgNode, at torch's default protocol
    (2, which names __builtin__.set) and at 2, 4, 5."""
    path = tmp_path / "k400_tiny_8.pth"
    save_xclip_checkpoint(files["weights"]["xclip"], path, xclip_config(), protocol)
    if protocol is None:  # through the command, as the issue ran it
        run = CliRunner().invoke(app, ["convert", str(path), "-o", str(tmp_path / "out")])
        assert run.exit_code == 0, run.output
        assert "detected: X-CLIP checkpoint (yacs config, 8 frames)" in run.output
        model, meta = load_checkpoint(tmp_path / "out")
    else:
        model, meta = interop.load_foreign(path)
    assert meta["source"]["config"] == {"DATA": {"NUM_FRAMES": 8, "INPUT_SIZE": 48, "DATASET": "kinetics400"},
                                        "MODEL": {"ARCH": "ViT-B/16", "DROP_PATH_RATE": 0.0, "PRETRAINED": None},
                                        "TRAIN": {"LR": 8e-6, "EPOCHS": 30}}
    tokens, expected = xclip_expected
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE


@pytest.fixture
def mismatched_xclip(files, tmp_path):
    """X-CLIP with one weight missing and one that no mbgf model has."""
    weights = dict(files["weights"]["xclip"])
    del weights["prompts_generator.decoder.1.norm3.bias"]
    weights["prompts_generator.extra_gate"] = torch.zeros(3)
    path = tmp_path / "xclip_mismatch.pth"
    torch.save({"model": weights, "epoch": 1, "config": xclip_config()}, path)
    return path


def test_key_mismatches_are_named(mismatched_xclip, tmp_path):
    with pytest.raises(UserError) as error:
        interop.convert_checkpoint(mismatched_xclip, tmp_path / "out")
    message = str(error.value)
    assert "1 missing key(s): prompts_generator.decoder.1.norm3.bias" in message
    assert "1 unexpected key(s): prompts_generator.extra_gate" in message and "--no-strict" in message

    output, meta = interop.convert_checkpoint(mismatched_xclip, tmp_path / "out", strict=False)
    assert meta["conversion"] == {"missing": ["prompts_generator.decoder.1.norm3.bias"],
                                  "unexpected": ["prompts_generator.extra_gate"]}
    assert read_meta(output)["conversion"] == meta["conversion"]


def test_wrong_shapes_are_named(files, tmp_path):
    weights = dict(files["weights"]["xclip"])
    weights["prompts_generator.alpha"] = torch.zeros(7)
    path = tmp_path / "bad_shape.pth"
    torch.save({"model": weights, "epoch": 1}, path)
    for strict in (True, False):  # a tensor of another shape cannot be loaded either way
        with pytest.raises(UserError, match=r"prompts_generator.alpha \[7\] \(model: \[128\]\)"):
            interop.load_foreign(path, strict=strict)


def test_mmaction_style_short_actionclip_table_keeps_its_frame_count(files, tmp_path):
    clip_state, head = files["weights"]["actionclip"]
    head = dict(head, **{"frame_position_embeddings.weight": head["frame_position_embeddings.weight"][:8]})
    path = tmp_path / "short.pt"
    torch.save({"epoch": 1, "model_state_dict": clip_state, "fusion_model_state_dict": head,
                "optimizer_state_dict": {}}, path)
    model, meta = interop.load_foreign(path)
    assert meta["config"]["frames"] == 8
    assert torch.equal(model.fusion_model.frame_position_embeddings.weight[:8], head["frame_position_embeddings.weight"])
    with pytest.raises(UserError, match="positions for 8 frames; cannot use 9"):
        interop.load_foreign(path, frames=9)
    output, _ = interop.convert_checkpoint(path, tmp_path / "short")  # the padding rows stay unusable
    with pytest.raises(UserError, match="positions for 8 frames; cannot use 9"):
        interop.load_any_checkpoint(output, frames=9)


@pytest.mark.parametrize("name", ["xclip", "actionclip"])
def test_test_files_use_the_published_key_names(files, name):
    """The tiny files have the key names of the published B/16 files (block counts aside)."""
    import re

    def patterns(keys):
        return {re.sub(r"\.(resblocks|decoder)\.\d+\.", r".\1.N.", k) for k in keys}

    tsv = {"xclip": "xclip_b16_8f_state_dict.tsv", "actionclip": "actionclip_transf_b16_8f_fusion_state_dict.tsv"}
    published = [line.split("\t")[0] for line in (DATA / tsv[name]).read_text().splitlines() if line.strip()]
    ours = files["weights"]["xclip"] if name == "xclip" else files["weights"]["actionclip"][1]
    assert patterns(ours) == patterns(published)


def published_shapes(name):
    rows = (line.split("\t") for line in (DATA / name).read_text().splitlines() if line.strip())
    return {key: [int(n) for n in shape.strip("[]").split(",") if n.strip()] for key, shape in rows}


def test_published_b16_key_lists_are_mbgfs_b16_models():
    """X-CLIP-B/16's and ActionCLIP-B/16's published state dicts have exactly the keys and shapes of
    mbgf's b16 models, so the released files load strictly."""
    with torch.device("meta"):  # shapes only
        xclip = fusion.build_video_model("b16", "xclip", mbgf=False, frames=8).state_dict()
        actionclip = fusion.build_video_model("b16", "actionclip", mbgf=False, frames=8).state_dict()
    assert {k: list(v.shape) for k, v in xclip.items()} == published_shapes("xclip_b16_8f_state_dict.tsv")
    head = {k: list(v.shape) for k, v in actionclip.items() if k.startswith("fusion_model.")}
    published = published_shapes("actionclip_transf_b16_8f_fusion_state_dict.tsv")
    assert head == {f"fusion_model.{k}": shape for k, shape in published.items()}


# ------------------------------------------------------------------------------ the command


def test_convert_command_writes_a_checkpoint_that_load_any_checkpoint_reads(files, tmp_path):
    output = tmp_path / "oa"
    run = CliRunner().invoke(app, ["convert", str(files["openai"]), "--format", "openai", "--frames", "4",
                                   "--output", str(output)])
    assert run.exit_code == 0, run.output
    assert str(output) in run.output
    model, meta = interop.load_any_checkpoint(output)
    assert meta["config"]["frames"] == 4 and meta["source"]["format"] == "openai"


def test_convert_command_errors_are_one_line(mismatched_xclip, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(mismatched_xclip), "--output", str(tmp_path / "out")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "prompts_generator.extra_gate" in lines[0] and str(mismatched_xclip) in lines[0]
    assert not (tmp_path / "out").exists()

    run = CliRunner().invoke(app, ["convert", str(mismatched_xclip), "--no-strict", "--output", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert "1 missing weight(s) left at initialisation: prompts_generator.decoder.1.norm3.bias" in run.output
    assert "1 unexpected weight(s) not loaded: prompts_generator.extra_gate" in run.output
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_converting_an_mbgf_checkpoint_says_so(converted):
    with pytest.raises(UserError, match="already an mbgf checkpoint"):
        interop.convert(converted["openai directory"])
