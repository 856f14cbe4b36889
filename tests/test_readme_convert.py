"""The README's "Published checkpoints: mbgf convert" lines, run as written on tiny files of each format
under the README's names (tests/test_interop.py writes them as OpenAI, ActionCLIP and X-CLIP save them);
the X-CLIP file exported to Hugging Face and converted back gives the same logits."""

import pytest
import reference_models as ref
import torch

from mbgf_cli import interop
from tests.readme_support import readme_words
from tests.test_interop import DIMS, actionclip_fp16, save_xclip_checkpoint, xclip_config
from tests.test_train_support import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run_line(capsys, line: str):
    code, stdout, stderr = run_cli(readme_words(line), capsys)
    assert code == 0, stderr
    return stdout


def test_readme_convert_openai_and_actionclip_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref.write_torchscript_archive(ref.openai_archive_state_dict(DIMS, seed=0), tmp_path / "ViT-B-16.pt")
    clip_state = actionclip_fp16(ref.random_clip_state_dict(DIMS, seed=10))
    head = ref.random_actionclip_head(DIMS, seed=11)
    torch.save({"epoch": 7, "model_state_dict": clip_state,
                "fusion_model_state_dict": {f"module.{k}": v for k, v in head.items()}},
               tmp_path / "actionclip_b16_8f.pt")

    run_line(capsys, "mbgf convert ViT-B-16.pt --output ckpt/clip-b16")
    _, meta = interop.load_any_checkpoint(tmp_path / "ckpt" / "clip-b16")
    assert meta["source"]["format"] == "openai" and meta["config"]["variant"] == "clip"
    run_line(capsys, "mbgf convert actionclip_b16_8f.pt --format actionclip --output ckpt/actionclip")
    _, meta = interop.load_any_checkpoint(tmp_path / "ckpt" / "actionclip")
    assert meta["source"]["format"] == "actionclip" and meta["config"]["variant"] == "actionclip"


@torch.no_grad()
def test_readme_convert_xclip_then_export_to_hugging_face_and_convert_back(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_xclip_checkpoint(ref.random_xclip_state_dict(DIMS, frames=32, seed=20), tmp_path / "k400_32_8.pth",
                          xclip_config(frames=32))
    run_line(capsys, "mbgf convert k400_32_8.pth --format xclip --frames 8 --output ckpt/xclip")
    model, meta = interop.load_any_checkpoint(tmp_path / "ckpt" / "xclip")
    assert meta["source"]["format"] == "xclip" and meta["config"]["frames"] == 8

    run_line(capsys, "mbgf export ckpt/xclip --format hf -o xclip-hf")
    (tmp_path / "xclip-hf").rename(tmp_path / "xclip-base-patch16")  # the README's name for an HF directory
    run_line(capsys, "mbgf convert xclip-base-patch16/ -o ckpt/xclip-hf")
    again, _ = interop.load_any_checkpoint(tmp_path / "ckpt" / "xclip-hf")

    torch.manual_seed(0)
    clips = torch.randn(2, 8, 3, DIMS.image, DIMS.image)
    tokens = ref.random_tokens(3, DIMS)
    model.eval()
    again.eval()
    assert ref.relative_error(again(clips, tokens), model(clips, tokens)) < 1e-4
