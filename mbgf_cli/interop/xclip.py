"""X-CLIP's own checkpoints (microsoft/VideoX, X-CLIP): ``{model, optimizer, lr_scheduler, max_accuracy,
epoch, config}``, ``config`` a yacs CfgNode (recorded as plain JSON). ``model`` already has the video
model's names. Frames are normalised with ImageNet's mean/std (recorded in the config's
``input_mean``/``input_std``, on the 0-1 scale), not CLIP's."""

from pathlib import Path

import fusion
from clip import safe_pickle
from mbgf_cli.interop.common import PUBLISHED_PROMPTS, Foreign, float_tensors, stored_frames, weights_of

NAME = "xclip"
TITLE = "X-CLIP checkpoint"


def matches(content, weights: dict | None) -> bool:
    return weights is not None and any(k.startswith(("mit.", "prompts_generator.")) or ".message_attn." in k
                                       for k in weights)


def read(content, path: Path, *, pretrained=None, frames: int | None = None) -> Foreign:
    state = float_tensors(weights_of(content), path)
    source, details = {}, []
    if "config" in content:
        source["config"] = safe_pickle.plain(content["config"])
        details.append("yacs config" if getattr(content["config"], "qualname", "") == "yacs.config.CfgNode"
                       else "config")
    frames = stored_frames(state)
    if frames:
        details.append(f"{frames} frames")
    metrics = {"max_accuracy": content["max_accuracy"]} if isinstance(content.get("max_accuracy"), (int, float)) else {}
    epoch = content.get("epoch")
    return Foreign(NAME, f"{TITLE} ({', '.join(details)})" if details else TITLE, state, "xclip", frames=frames,
                   options={"input_mean": fusion.IMAGENET_MEAN, "input_std": fusion.IMAGENET_STD},
                   epoch=epoch if isinstance(epoch, int) else None, metrics=metrics,
                   prompt_templates=PUBLISHED_PROMPTS["xclip"], source=source)
