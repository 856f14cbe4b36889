"""ViFi-CLIP's checkpoints (muzairkhattak/ViFi-CLIP): a fully fine-tuned CLIP with mean pooling over
frames, i.e. mbgf's ``clip`` variant. Written by X-CLIP's training code: ``{model, optimizer,
lr_scheduler, max_accuracy, epoch, config}`` with a yacs config; ``model`` is the DistributedDataParallel
state dict of ``ViFiCLIP``: ``module.image_encoder.*`` (CLIP's ``visual``), ``module.text_encoder.*``
(CLIP's text transformer, positional embedding, ``ln_final``, ``text_projection``), ``module.logit_scale``
and ``module.prompt_learner.*`` (the training classes' prompts, already embedded).

CLIP's token embedding is not among them: ViFi-CLIP embeds its prompts once, when the model is built,
with the CLIP it starts from, and never trains the table. It comes from that CLIP (``--pretrained``;
default: OpenAI's release named by the config's ``MODEL.ARCH``), checked against the start-of-text
embedding the file's prompts hold. Frames are normalised with ImageNet's mean/std (X-CLIP's pipeline);
the test prompt is ``"{CTX_INIT} {}."`` ("a photo of a {}."), or the class name alone with ``ZS_EVAL``.
Prompt-learning checkpoints (learned context tokens, ``VPT`` prompts) have no mbgf counterpart."""

from pathlib import Path

import torch

import fusion
from clip import loading, safe_pickle
from mbgf_cli.errors import UserError
from mbgf_cli.interop.common import Foreign, float_tensors, renamed, weights_of

NAME = "vificlip"
TITLE = "ViFi-CLIP checkpoint"
TOKEN_EMBEDDING = "token_embedding.weight"


def matches(content, weights: dict | None) -> bool:
    return (weights is not None and any(k.startswith("image_encoder.") for k in weights)
            and any(k.startswith("text_encoder.") for k in weights))


def read(content, path: Path, *, pretrained=None, frames: int | None = None) -> Foreign:
    weights = float_tensors(weights_of(content), path)
    config = safe_pickle.plain(content.get("config")) if isinstance(content, dict) else None
    config = config if isinstance(config, dict) else {}
    trainer = _section(config, "TRAINER", "ViFi_CLIP")
    learned = [k for k in weights if k.startswith("prompt_learner.ctx") or "VPT" in k]
    if learned or trainer.get("PROMPT_MODEL"):
        shown = f"learned prompt tokens such as {learned[0]}" if learned else "TRAINER.ViFi_CLIP.PROMPT_MODEL"
        raise UserError(f"{path}: a prompt-learning ViFi-CLIP checkpoint ({shown}); mbgf has no learned prompts "
                        "and reads the fully fine-tuned ViFi-CLIP only")

    prompts = {k: v for k, v in weights.items() if k.startswith("prompt_learner.")}
    state = renamed({k: v for k, v in weights.items() if k not in prompts},
                    {"image_encoder.": "visual.", "text_encoder.": ""})
    arch = _section(config, "MODEL").get("ARCH")
    table, clip_name = _token_embedding(pretrained, arch, path)
    width = state["positional_embedding"].shape[1] if "positional_embedding" in state else None
    if width is not None and table.shape[1] != width:
        raise UserError(f"{path}: the token embedding of {clip_name} is {table.shape[1]} wide, this ViFi-CLIP's "
                        f"text encoder {width}: give the CLIP it was fine-tuned from with --pretrained")
    _check_start_token(prompts, table, clip_name, path)
    state[TOKEN_EMBEDDING] = table

    data = _section(config, "DATA")
    trained_frames = data.get("NUM_FRAMES") if isinstance(data.get("NUM_FRAMES"), int) else None
    if trainer.get("ZS_EVAL"):
        template = "{}"
    else:  # VLPromptLearner without prompt learning: f"{CTX_INIT} {classname}."
        template = str(trainer.get("CTX_INIT", "a photo of a")).replace("_", " ") + " {}."
    details = ["yacs config"] if config else []
    details += [f"{trained_frames} frames"] if trained_frames else []
    details.append(f"token embedding from {clip_name}")
    metrics = {"max_accuracy": content["max_accuracy"]} if isinstance(content.get("max_accuracy"), (int, float)) else {}
    epoch = content.get("epoch")
    return Foreign(NAME, f"{TITLE} ({', '.join(details)})", state, "clip", frames=trained_frames,
                   options={"input_mean": fusion.IMAGENET_MEAN, "input_std": fusion.IMAGENET_STD},
                   epoch=epoch if isinstance(epoch, int) else None, metrics=metrics, prompt_templates=[template],
                   source={"config": config, "token_embedding": clip_name} if config else {"token_embedding": clip_name})


def _section(config: dict, *names: str) -> dict:
    for name in names:
        config = config.get(name) if isinstance(config, dict) else None
    return config if isinstance(config, dict) else {}


def _token_embedding(pretrained, arch, path: Path) -> tuple[torch.Tensor, str]:
    """CLIP's token embedding table from ``pretrained`` (a released name or a weights file), else from
    the release the config names."""
    name = str(pretrained) if pretrained else arch
    if not name:
        raise UserError(f"{path}: ViFi-CLIP files do not hold CLIP's token embedding and this one does not name "
                        "its CLIP (no MODEL.ARCH): give the CLIP it was fine-tuned from with --pretrained")
    released = loading.released_model(name)
    if released is not None:
        try:
            file = loading.download(loading.model_url(released.name), released.sha256,
                                    loading.cache_dir() / released.filename)
        except (ConnectionError, ValueError) as e:
            raise UserError(f"{path}: ViFi-CLIP files do not hold CLIP's token embedding, and {released.name}'s "
                            f"weights could not be fetched ({e}); give a local copy with --pretrained FILE") from None
    else:
        file = Path(name).expanduser()
        if not file.is_file():
            raise UserError(f"--pretrained {name}: no such file, and not a CLIP model name "
                            f"({', '.join(loading.available_models())})")
    try:
        weights = loading.load_state_dict(file)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if TOKEN_EMBEDDING not in weights:
        raise UserError(f"{file}: no {TOKEN_EMBEDDING}: not CLIP weights")
    return weights[TOKEN_EMBEDDING].float(), released.name if released is not None else str(file)


def _check_start_token(prompts: dict, table: torch.Tensor, clip_name: str, path: Path) -> None:
    """Every embedded prompt in the file starts with <|startoftext|> (CLIP's second-to-last token) as the
    CLIP it was built with embeds it: a different CLIP's table is caught here."""
    held = prompts.get("prompt_learner.complete_text_embeddings", prompts.get("prompt_learner.token_prefix"))
    if held is None or held.ndim != 3 or held.shape[-1] != table.shape[1]:
        return
    start = table[table.shape[0] - 2]
    if not torch.allclose(held[0, 0], start, rtol=1e-3, atol=1e-3 * float(start.abs().max())):
        raise UserError(f"{path}: its prompts were embedded with another CLIP than {clip_name} (the start-of-text "
                        "embeddings differ): give the CLIP it was fine-tuned from with --pretrained")
