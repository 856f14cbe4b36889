"""OpenAI-compatible CLIP: model, tokenizer and weight loading. Knows nothing about video."""

from clip.model import CLIP, CONFIGS, CLIPConfig, build_model, config_from_state_dict, count_parameters

__all__ = ["CLIP", "CONFIGS", "CLIPConfig", "build_model", "config_from_state_dict", "count_parameters"]
