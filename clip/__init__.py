"""OpenAI-compatible CLIP: model, tokenizer and weight loading. Knows nothing about video."""

from clip.loading import available_models, cache_dir, download, load, load_state_dict
from clip.model import (
    CLIP,
    CLIPConfig,
    build_model,
    config_from_state_dict,
    count_parameters,
    describe_key_mismatch,
    load_weights,
)
from clip.released import RELEASED, ReleasedModel, released_model
from clip.tokenizer import decode, tokenize

__all__ = [
    "CLIP",
    "RELEASED",
    "CLIPConfig",
    "ReleasedModel",
    "available_models",
    "build_model",
    "cache_dir",
    "config_from_state_dict",
    "count_parameters",
    "decode",
    "describe_key_mismatch",
    "download",
    "load",
    "load_state_dict",
    "load_weights",
    "released_model",
    "tokenize",
]
