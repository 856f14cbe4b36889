"""Class-name prompts: this project's own templates, and class names -> ``[K, P, 77]`` token ids.

Training draws one template per video; evaluation combines all of them (see :mod:`fusion.video_model`).
The bare class name is one of the templates (X-CLIP prompts with the class name alone).
"""

import torch

TEMPLATES = (
    "a video clip of {}.",
    "a short video showing {}.",
    "footage of {}.",
    "a recording of {}.",
    "the action shown is {}.",
    "an example of the action {}.",
    "a sequence of frames showing {}.",
    "{}, seen in a video.",
    "what happens here: {}.",
    "{}",
)


def class_prompts(class_names: list[str], templates: tuple[str, ...] | list[str] = TEMPLATES) -> list[list[str]]:
    """Every class name in every template: ``K`` lists of ``P`` strings. Underscores in names (as in
    some label files) become spaces."""
    if not templates:
        raise ValueError("no prompt templates")
    names = [name.replace("_", " ").strip() for name in class_names]
    return [[template.format(name) for template in templates] for name in names]


def class_tokens(class_names: list[str], templates: tuple[str, ...] | list[str] = TEMPLATES,
                 context_length: int = 77) -> torch.Tensor:
    """Token ids ``[K, P, context_length]`` of every class name in every template (``clip.tokenize``;
    over-long prompts are truncated, keeping their end-of-text token)."""
    from clip.tokenizer import tokenize

    prompts = class_prompts(class_names, templates)
    flat = [prompt for per_class in prompts for prompt in per_class]
    return tokenize(flat, context_length=context_length, truncate=True).view(len(prompts), len(templates), -1)


tokenize_classes = class_tokens


def class_text_tokens(class_names: list[str], prompts: str, given_templates: list[str] | None = None) -> torch.Tensor:
    """Class names through the prompt templates: ``[K, P, L]`` ("all") or ``[K, L]`` ("one": the first).
    ``given_templates`` replace this project's own (a converted checkpoint records the ones its paper
    tested with).

    Tokens after the longest prompt's end-of-text are cut (L <= 77): the text encoder is causal and
    reads each prompt's features at its end-of-text token, so the result is the same, for less work.
    """
    if prompts not in ("all", "one"):
        raise ValueError(f"prompts must be 'all' or 'one', not {prompts!r}")
    chosen = list(given_templates or TEMPLATES)
    tokens = class_tokens(class_names, chosen if prompts == "all" else chosen[:1])
    if prompts == "one":
        tokens = tokens[:, 0]
    length = int(tokens.argmax(dim=-1).max()) + 1  # <|endoftext|> has the largest id
    return tokens[..., :length].contiguous()
