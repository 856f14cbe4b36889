"""ViFi-CLIP checkpoints (muzairkhattak/ViFi-CLIP) -> mbgf's clip variant: a file in the layout of
ViFi-CLIP's epoch_saving (``model`` = the DistributedDataParallel state dict of ``ViFiCLIP``, a yacs
config, optimizer, scheduler), the CLIP it was fine-tuned from as an OpenAI TorchScript archive, converted
with ``mbgf convert --pretrained``, and compared with a from-scratch computation of ViFi-CLIP's forward
pass (tests/reference_models.py)."""

import pytest
import reference_models as ref
import torch
from typer.testing import CliRunner
from yacs.config import CfgNode

import fusion
from mbgf_cli import interop
from mbgf_cli.app import app, main
from mbgf_cli.checkpoint import load_checkpoint
from mbgf_cli.errors import UserError

DIMS = ref.TinyDims()
TOLERANCE = 1e-4  # relative: max |mbgf - ViFi-CLIP| / max |ViFi-CLIP|
FRAMES, CLASSES = 8, 5

pytestmark = pytest.mark.usefixtures("one_thread")


def vificlip_config(zs_eval=False, prompt_model=False):
    """utils/config.py's defaults as configs/zero_shot/train/k400/16_16_vifi_clip.yaml sets them (8 frames
    here), frozen, as main.py saves it."""
    config = CfgNode()
    config.DATA = CfgNode()
    config.DATA.NUM_FRAMES, config.DATA.INPUT_SIZE, config.DATA.DATASET = FRAMES, DIMS.image, "kinetics400"
    config.MODEL = CfgNode()
    config.MODEL.ARCH, config.MODEL.DROP_PATH_RATE, config.MODEL.FIX_TEXT = "ViT-B/16", 0.0, True
    config.TRAINER = CfgNode()
    config.TRAINER.ViFi_CLIP = CfgNode()
    trainer = config.TRAINER.ViFi_CLIP
    trainer.PROMPT_MODEL, trainer.N_CTX_VISION, trainer.N_CTX_TEXT = prompt_model, 0, 0
    trainer.CTX_INIT, trainer.PROMPT_DEPTH_VISION, trainer.PROMPT_DEPTH_TEXT = "a photo of a", 0, 1
    trainer.USE, trainer.ZS_EVAL = "both", zs_eval
    config.freeze()
    return config


def save_vificlip(model_state, path, config):
    """utils/tools.py epoch_saving."""
    torch.save({"model": model_state, "optimizer": {"state": {}, "param_groups": []},
                "lr_scheduler": {"t_initial": 10}, "max_accuracy": 71.5, "epoch": 9, "config": config}, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vificlip")
    model_state, original = ref.random_vificlip_model_state(DIMS, seed=30, class_tokens=ref.random_tokens(4, seed=9))
    ref.write_torchscript_archive(original, root / "ViT-tiny.pt")
    save_vificlip(model_state, root / "vifi_clip_k400.pth", vificlip_config())
    other = ref.openai_archive_state_dict(DIMS, seed=50)
    ref.write_torchscript_archive(other, root / "other-CLIP.pt")
    return {"vificlip": root / "vifi_clip_k400.pth", "clip": root / "ViT-tiny.pt", "other": root / "other-CLIP.pt",
            "model_state": model_state, "token_embedding": original["token_embedding.weight"].float(), "root": root}


@torch.no_grad()
def test_vificlip_gives_its_logits_as_the_clip_variant(files, tmp_path):
    output = tmp_path / "vifi"
    run = CliRunner().invoke(app, ["convert", str(files["vificlip"]), "--pretrained", str(files["clip"]),
                                   "-o", str(output)])
    assert run.exit_code == 0, run.output
    assert f"detected: ViFi-CLIP checkpoint (yacs config, 8 frames, token embedding from {files['clip']})" in run.output
    model, meta = load_checkpoint(output)
    config = meta["config"]
    assert config["variant"] == "clip" and config["frames"] == FRAMES and not config["mbgf"]
    assert config["input_mean"] == list(fusion.IMAGENET_MEAN) and config["input_std"] == list(fusion.IMAGENET_STD)
    assert meta["prompt_templates"] == ["a photo of a {}."]  # CTX_INIT + class name + "."
    assert meta["epoch"] == 9 and meta["metrics"] == {"max_accuracy": 71.5}
    assert meta["source"]["config"]["TRAINER"]["ViFi_CLIP"]["USE"] == "both"

    clips, tokens = ref.random_clips(2, FRAMES, DIMS), ref.random_tokens(CLASSES, DIMS)
    expected = ref.vificlip_logits(files["model_state"], files["token_embedding"], clips, tokens)
    assert ref.relative_error(model(clips, tokens), expected) < TOLERANCE
    # The comparison can fail: another CLIP's token embedding gives other logits.
    other = ref.openai_archive_state_dict(DIMS, seed=50)["token_embedding.weight"].float()
    assert ref.relative_error(ref.vificlip_logits(files["model_state"], other, clips, tokens), expected) > 100 * TOLERANCE


def test_another_clips_token_embedding_is_refused(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(files["vificlip"]), "--pretrained", str(files["other"]), "-o", str(tmp_path / "out")])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "embedded with another CLIP than" in line and "--pretrained" in line
    assert not (tmp_path / "out").exists()


def test_without_pretrained_the_release_the_config_names_is_fetched(files, tmp_path, monkeypatch):
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MBGF_CLIP_URL", "http://127.0.0.1:9")  # nothing listens there: the fetch fails
    with pytest.raises(UserError, match=r"ViT-B/16's weights could not be fetched .*--pretrained FILE"):
        interop.convert(files["vificlip"])


def test_zero_shot_evaluation_config_prompts_with_the_class_name(files, tmp_path):
    path = tmp_path / "zs.pth"
    save_vificlip(files["model_state"], path, vificlip_config(zs_eval=True))
    _, _, meta = interop.convert(path, pretrained=files["clip"])
    assert meta["prompt_templates"] == ["{}"]


def test_prompt_learning_checkpoints_are_refused(files, tmp_path):
    state = dict(files["model_state"], **{"module.prompt_learner.ctx": torch.zeros(4, DIMS.text_width)})
    path = tmp_path / "prompting.pth"
    save_vificlip(state, path, vificlip_config(prompt_model=True))
    with pytest.raises(UserError, match="a prompt-learning ViFi-CLIP checkpoint .*prompt_learner.ctx"):
        interop.convert(path, pretrained=files["clip"])
