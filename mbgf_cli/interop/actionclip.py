"""ActionCLIP's own checkpoints (sallymmx/ActionCLIP): ``{epoch, model_state_dict,
fusion_model_state_dict, optimizer_state_dict}``. The whole CLIP under OpenAI's names; the "Transf"
head's keys (``module.``-prefixed by DataParallel) go under ``fusion_model.``. The config asks for
ActionCLIP's test recipe: a fixed logit scale of 100, softmax averaged over the 16 templates."""

from pathlib import Path

from mbgf_cli.interop.common import (
    ACTIONCLIP_TEST_LOGIT_SCALE,
    PUBLISHED_PROMPTS,
    Foreign,
    count_blocks,
    float_tensors,
    pad_short_actionclip_table,
)

NAME = "actionclip"
TITLE = "ActionCLIP checkpoint"
TEST_RECIPE = {"template_eval": "mean_softmax", "test_logit_scale": ACTIONCLIP_TEST_LOGIT_SCALE}


def matches(content, weights: dict | None) -> bool:
    return isinstance(content, dict) and "model_state_dict" in content and "fusion_model_state_dict" in content


def read(content, path: Path, *, pretrained=None, frames: int | None = None) -> Foreign:
    state = float_tensors(content["model_state_dict"], path)
    head = float_tensors(content["fusion_model_state_dict"], path)
    state.update({f"fusion_model.{k}": v for k, v in head.items()})
    trained_frames = pad_short_actionclip_table(state, frames, path)
    layers = count_blocks(head, "transformer.resblocks.")
    epoch = content.get("epoch")
    return Foreign(NAME, f"{TITLE} (Transf head, {layers} blocks)", state, "actionclip", frames=trained_frames,
                   options=dict(TEST_RECIPE), epoch=epoch if isinstance(epoch, int) else None,
                   prompt_templates=PUBLISHED_PROMPTS["actionclip"])
