"""mmaction2's port of ActionCLIP (open-mmlab/mmaction2 ``projects/actionclip``): an mmengine checkpoint
``{meta, state_dict, ...}`` whose ``state_dict`` holds OpenAI's CLIP under ``clip.`` and the "Transf"
head under ``adapter.``, its frame position table with only the T trained rows.

Two differences from ActionCLIP's own code, both kept so that the converted model computes what
mmaction2 computes: the adapter is built from OpenAI's ``Transformer``, whose LayerNorms use torch's
eps 1e-5 (ActionCLIP's are "TF style", 1e-12), and frames are normalised with the mean/std of
mmaction2's configs (CLIP's, rounded on the 0-255 scale). The test recipe is ActionCLIP's: 100 x cosine,
softmax over classes averaged over the same 16 templates."""

from pathlib import Path

from mbgf_cli.interop.actionclip import TEST_RECIPE
from mbgf_cli.interop.common import (
    PUBLISHED_PROMPTS,
    Foreign,
    count_blocks,
    float_tensors,
    pad_short_actionclip_table,
    renamed,
    weights_of,
)

NAME = "mmaction2"
TITLE = "mmaction2 ActionCLIP checkpoint"
ADAPTER_LAYER_NORM_EPS = 1e-5
# data_preprocessor of projects/actionclip/configs/*.py, on the 0-255 scale
MEAN_255 = (122.771, 116.746, 104.093)
STD_255 = (68.500, 66.632, 70.323)


def matches(content, weights: dict | None) -> bool:
    return (weights is not None and "adapter.frame_position_embeddings.weight" in weights
            and any(k.startswith("clip.visual.") for k in weights))


def read(content, path: Path, *, pretrained=None, frames: int | None = None) -> Foreign:
    state = renamed(float_tensors(weights_of(content), path), {"clip.": "", "adapter.": "fusion_model."})
    trained_frames = pad_short_actionclip_table(state, frames, path)
    layers = count_blocks(state, "fusion_model.transformer.resblocks.")
    meta = content.get("meta") if isinstance(content.get("meta"), dict) else {}
    epoch = meta.get("epoch")
    options = dict(TEST_RECIPE, actionclip_layer_norm_eps=ADAPTER_LAYER_NORM_EPS,
                   input_mean=tuple(v / 255 for v in MEAN_255), input_std=tuple(v / 255 for v in STD_255))
    shown = f", {trained_frames} frames" if trained_frames else ""
    return Foreign(NAME, f"{TITLE} (adapter: {layers} blocks{shown})", state, "actionclip",
                   frames=trained_frames, options=options, epoch=epoch if isinstance(epoch, int) else None,
                   prompt_templates=PUBLISHED_PROMPTS["actionclip"])
