"""Shared by the predict/embed/search tests (no tests here): videos whose class shows in every frame (a
colour per class) and a tiny CLIP+MBGF trained on them in about a second, saved as an mbgf checkpoint.

    root, checkpoint = colour_checkpoint(tmp_path_factory)   # once per test session

``root`` is a dataset in the seed layout (``videos/<class>/vN.mp4``, ``val.txt`` listing every video
with its label, ``labels.csv``), so ``mbgf eval`` reads the very videos ``mbgf predict`` is given.
"""

from pathlib import Path

import numpy as np
import torch

CLASS_NAMES = ["something red", "something green", "something blue"]
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
VIDEOS_PER_CLASS = 3
SIZE = (32, 64)  # height, width: three crops of a 32 px view differ
FRAMES, INPUT_SIZE = 4, 32


def colour_frames(k: int, seed: int, num_frames: int = 8) -> np.ndarray:
    """``[T, H, W, 3]`` uint8: class ``k``'s colour with per-pixel noise and a bright square that moves."""
    rng = np.random.default_rng(seed)
    frames = np.empty((num_frames, *SIZE, 3), dtype=np.uint8)
    for t in range(num_frames):
        noise = rng.integers(-30, 30, size=(*SIZE, 3))
        frame = np.clip(np.array(COLOURS[k]) + noise, 0, 255)
        x = 4 + 6 * t
        frame[10:18, x:x + 8] = 230
        frames[t] = frame
    return frames


def write_colour_dataset(root: Path) -> Path:
    from tests.videos import write_video

    lines = []
    for k in range(len(CLASS_NAMES)):
        for i in range(VIDEOS_PER_CLASS):
            rel = f"c{k}/v{i}.mp4"
            write_video(root / "videos" / rel, frames=colour_frames(k, seed=10 * k + i))
            lines.append(f"{rel} {k}\n")
    (root / "val.txt").write_text("".join(lines))
    (root / "labels.csv").write_text("id,name\n" + "".join(f"{k},{n}\n" for k, n in enumerate(CLASS_NAMES)))
    return root


def train_checkpoint(root: Path, directory: Path, steps: int = 30) -> Path:
    """A tiny CLIP+MBGF (4 frames, 32 px, frozen text) fitted to the colour videos, saved with their class
    names and the "all templates" prompts, as ``mbgf train`` would save it."""
    import fusion
    from fusion.prompts import class_text_tokens
    from mbgf_cli.checkpoint import save_checkpoint
    from mbgf_cli.data import VideoDataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = fusion.build_video_model(model="tiny", variant="clip", mbgf=True, frames=FRAMES, input_size=INPUT_SIZE)
        dataset = VideoDataset(root, "val.txt", len(CLASS_NAMES), frames=FRAMES, input_size=INPUT_SIZE, train=False)
        clips = torch.stack([dataset[i][0][0] for i in range(len(dataset))])
        labels = torch.tensor([label for _, label in dataset.samples])
        tokens = class_text_tokens(CLASS_NAMES, "all")
        model.freeze_text()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
        model.train()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(clips, tokens), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        save_checkpoint(directory, model, {"config": model.config.to_dict(), "class_names": CLASS_NAMES, "epoch": 1,
                                           "metrics": {}, "train": {"prompts": "all"}})
    finally:
        torch.set_num_threads(threads)
    return directory


def colour_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """``(dataset root, checkpoint directory)``, made once per test session (read-only: copy to change)."""
    base = tmp_path_factory.getbasetemp() / "colour-videos"
    root, checkpoint = base / "data", base / "checkpoint"
    if not (checkpoint / "model.safetensors").is_file():
        write_colour_dataset(root)
        train_checkpoint(root, checkpoint)
    return root, checkpoint
