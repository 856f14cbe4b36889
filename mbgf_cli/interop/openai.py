"""OpenAI's CLIP weights (a TorchScript archive, a state dict or safetensors with OpenAI's names): the
``clip`` variant, frame embeddings averaged over time."""

from pathlib import Path

from clip import safe_pickle
from mbgf_cli.interop.common import Foreign, float_tensors, weights_of

NAME = "openai"
TITLE = "OpenAI CLIP weights"


def matches(content, weights: dict | None) -> bool:
    return weights is not None and "visual.proj" in weights and "text_projection" in weights


def read(content, path: Path, *, pretrained=None, frames: int | None = None) -> Foreign:
    if safe_pickle.is_torchscript_archive(path):
        kind = "TorchScript archive"
    else:
        kind = "safetensors" if safe_pickle.is_safetensors(path) else "state dict"
    return Foreign(NAME, f"{TITLE} ({kind})", float_tensors(weights_of(content), path), "clip")
