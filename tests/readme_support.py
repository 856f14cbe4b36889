"""Shared by the tests that run README command lines in their written form (no tests here): the folder
the README's examples assume, made in a temporary directory.

    root = readme_layout(tmp_path_factory.mktemp("readme"))   # then monkeypatch.chdir(root)

``root`` holds ``new_videos/`` written by the README's own ``mbgf prepare-data synthetic`` line (the 12
synthetic classes, 2 videos each), ``runs/synthetic-tiny-clip-mbgf/best`` (a random tiny CLIP+MBGF saved
with those 12 class names at epoch 19, its MBGF weights non-zero so that the gates vary) and ``my_videos/``
(two short videos). ``readme_words(line)`` checks that ``line`` is in the README verbatim and gives the
arguments after ``mbgf``.
"""

import os
import shlex
from pathlib import Path

import numpy as np
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
CHECKPOINT = "runs/synthetic-tiny-clip-mbgf/best"
PREPARE_NEW_VIDEOS = "mbgf prepare-data synthetic --videos-per-class 2 --val-fraction 0.5 --size 64 --seed 7 -o new_videos"
FRAMES, INPUT_SIZE = 4, 32


def readme_words(line: str) -> list[str]:
    """The words after ``mbgf`` of a README line, which must occur in the README as written."""
    assert line in README.read_text(), f"not in README.md: {line}"
    words = shlex.split(line, comments=True)
    assert words[0] == "mbgf", line
    return words[1:]


def tiny_synthetic_checkpoint(directory: Path, epoch: int = 19, names: list[str] | None = None) -> torch.nn.Module:
    """A random tiny CLIP+MBGF saved with ``names`` (default: the synthetic class set a)."""
    import fusion
    from mbgf_cli.checkpoint import save_checkpoint
    from mbgf_cli.data.synthetic import class_names

    torch.manual_seed(3)
    model = fusion.build_video_model(model="tiny", variant="clip", mbgf=True, frames=FRAMES, input_size=INPUT_SIZE)
    with torch.no_grad():
        for weight in (model.mbgf.temporal_proj.weight, model.mbgf.motion_proj.weight, model.mbgf.gate.out.weight):
            weight.normal_(std=0.3)
    model.eval()
    save_checkpoint(directory, model, {"config": model.config.to_dict(), "class_names": names or class_names("a"),
                                       "epoch": epoch, "metrics": {}, "train": {"prompts": "all"}})
    return model


def readme_layout(root: Path) -> Path:
    """``new_videos/``, the tiny checkpoint and ``my_videos/`` under ``root``, as the README assumes."""
    from tests.test_train_support import run_cli
    from tests.videos import write_video

    here = Path.cwd()
    os.chdir(root)
    try:
        code, _, _ = run_cli(readme_words(PREPARE_NEW_VIDEOS))
    finally:
        os.chdir(here)
    assert code == 0 and len((root / "new_videos" / "val.txt").read_text().splitlines()) == 12
    tiny_synthetic_checkpoint(root / CHECKPOINT)
    rng = np.random.default_rng(5)
    for name in ("a.mp4", "b.mp4"):
        write_video(root / "my_videos" / name, frames=rng.integers(0, 255, size=(8, 48, 64, 3), dtype=np.uint8))
    return root
