"""ONNX: an mbgf model as an ONNX file (``mbgf export --format onnx``), and such a file as the model of
``mbgf predict --checkpoint model.onnx``, run by onnxruntime (a deployment needs no torch for the model).

What is exported (the torch exporter, ``torch.onnx.export(dynamo=True)``, fp32, dynamic batch axis):

- ``model.onnx``: input ``video`` float32 ``[B, T, 3, H, W]``: the clips *after* normalisation, exactly
  what mbgf's predictor feeds its model (decode, sample, resize, crop as ``VideoFiles``; then
  ``(pixel / 255 - mean) / std`` with the file's ``input_mean``/``input_std``). Outputs ``logits [B, K]``
  (the model's eval logits: logit scale, prompt ensemble and X-CLIP's video-specific prompts included),
  ``gates [B, 3]`` (MBGF models: appearance, temporal, motion) and ``video_features [B, E]`` (the video
  embedding, not normalised, as ``encode_video``). The class text is baked in: the K classes' raw text
  features, through the prompt templates the model was trained with.
- with ``--free-text``: ``model.onnx`` takes a second input ``text_features`` ``[K, E]`` (``[K, P, E]``
  for ``mean_softmax`` models), and ``model.text.onnx`` is CLIP's text encoder: ``tokens`` int64
  ``[N, 77]`` -> ``text_features [N, E]`` (raw: X-CLIP's prompt generator consumes them unnormalised,
  and the prompt ensemble averages raw features) and ``text_embeddings [N, E]`` (unit norm).

Metadata (``metadata_props``, JSON values): ``mbgf`` (everything below in one object), ``class_names``,
``frames``, ``input_size``, ``input_mean``, ``input_std``, ``variant``, ``backbone``, ``mbgf_fusion``,
``prompts``, ``templates``, ``input``: enough for predict to need nothing else.

An output file is mbgf's when its metadata says so: replaced only with ``--overwrite``; any other file
is the user's and never replaced (the rule of ``mbgf_cli.outputs`` for folders).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mbgf_cli.errors import UserError

FORMAT = "mbgf-onnx"
VERSION = 1
CONTEXT_LENGTH = 77
INPUT = ("float32 [batch, frames, 3, input_size, input_size]: RGB frames on the 0-1 scale, normalised "
         "(x - input_mean) / input_std")


def text_file_for(path) -> Path:
    """The text encoder beside a free-text video file: ``model.onnx`` -> ``model.text.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.text{path.suffix or '.onnx'}")


def read_metadata(path) -> dict | None:
    """The ``mbgf`` metadata of an ONNX file written by mbgf, else None (not ONNX, or someone else's)."""
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any file onnxruntime cannot open is not an mbgf ONNX file
        return None
    return _mbgf_metadata(session)


def _mbgf_metadata(session) -> dict | None:
    try:
        meta = json.loads(session.get_modelmeta().custom_metadata_map.get("mbgf", ""))
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def check_onnx_output(path, overwrite: bool, option: str = "--output") -> Path:
    """``path`` may be written (before any work): a writable file name that is absent, or an ONNX file
    mbgf wrote and ``overwrite`` is given. A file of anyone else is refused, whatever the options."""
    from mbgf_cli.outputs import check_output_file

    path = check_output_file(path, option)
    if path.exists() or path.is_symlink():
        if not path.is_file() or read_metadata(path) is None:
            raise UserError(f"{option} {path}: exists and is not an ONNX file mbgf exported; give a new name "
                            "(nothing of yours is changed)")
        if not overwrite:
            raise UserError(f"{option} {path}: exists (an ONNX file mbgf exported); give --overwrite to replace it")
    return path


@dataclass
class Exported:
    video: Path                 # model.onnx
    text: Path | None           # model.text.onnx (free text)
    class_names: list[str]      # baked in ([] with free text)
    name: str                   # the model, in words


def export_onnx(source, output, overwrite: bool = False, free_text: bool = False, class_names=None,
                pretrained=None, status=None) -> Exported:
    """``mbgf export --format onnx``: ``source`` (an mbgf checkpoint, or any checkpoint ``mbgf convert``
    reads) as ``output`` (and ``output``'s ``.text.onnx`` with ``free_text``). ``class_names``: the
    classes to bake in (None: the checkpoint's). ``status(text)`` is told each step."""
    from mbgf_cli.interop import load_any_checkpoint

    _require_exporter()
    if not str(output).lower().endswith(".onnx"):
        raise UserError(f"--output {output}: give a name ending in .onnx (mbgf predict --checkpoint tells ONNX files "
                        "by it)")
    video_path = check_onnx_output(output, overwrite)
    text_path = check_onnx_output(text_file_for(video_path), overwrite) if free_text else None
    say = status or (lambda text: None)
    say(f"loading {source}")
    model, meta = load_any_checkpoint(source, pretrained=pretrained)
    model = model.float().eval()
    names = list(class_names) if class_names else list(meta.get("class_names") or [])
    if not free_text and not names:
        raise UserError(f"{source} carries no class names: give --classes \"a, b, ...\" or --labels FILE, or "
                        "--free-text (any classes at run time)")
    recorded = (meta.get("train") or {}).get("prompts") or "all"
    templates = meta.get("prompt_templates")
    description = {
        "format": FORMAT, "version": VERSION, "config": model.config.to_dict(), "name": model.config.name,
        "class_names": [] if free_text else names, "prompts": recorded, "templates": templates,
        "free_text": free_text, "source": str(source), "epoch": meta.get("epoch"), "input": INPUT,
    }
    video_graph = VideoGraph(model, None if free_text else _baked_text(model, names, recorded, templates))
    say(f"exporting {model.config.name}'s video encoder")
    export_graph(video_graph, _example_inputs(model, free_text), video_path,
                 metadata_props({**description, "kind": "video"}))
    if text_path is not None:
        say("exporting the text encoder")
        tokens = torch.zeros(3, CONTEXT_LENGTH, dtype=torch.long)
        tokens[:, 0], tokens[:, 1] = 49406, 49407  # start and end of text
        export_graph(TextGraph(model), (tokens,), text_path, metadata_props({**description, "kind": "text"}))
    return Exported(video_path, text_path, [] if free_text else names, model.config.name)


def _require_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError(f"--format onnx needs onnx, onnxscript and onnxruntime ({e.name} is missing): "
                        "pip install 'mbgf[onnx]'") from None


def _baked_text(model, names: list[str], prompts: str, templates) -> torch.Tensor:
    """The classes' raw text features as the model's forward pass would compute them: ``[K, E]`` or
    ``[K, P, E]`` (P templates)."""
    from fusion.prompts import class_text_tokens

    with torch.no_grad():
        return model.encode_text(class_text_tokens(names, prompts, templates)).float()


def _example_inputs(model, free_text: bool) -> tuple:
    config = model.config
    video = torch.randn(2, config.frames, 3, config.input_size, config.input_size)
    if not free_text:
        return (video,)
    width = model.clip_config.embed_dim
    shape = (3, 2, width) if config.template_eval == "mean_softmax" else (3, width)
    return video, torch.randn(*shape)


@contextmanager
def _encoded_text(model):
    """Within: ``model.encode_text`` is the identity, so that ``model(video, text)`` takes the classes'
    text *features* in place of their tokens and runs the model's own forward pass on them."""
    model.encode_text = _identity
    try:
        yield model
    finally:
        del model.encode_text


def _identity(x):
    return x


class VideoGraph(nn.Module):
    """What ``model.onnx`` computes: ``video`` (and ``text_features`` unless baked in) -> logits, gates
    (MBGF models), video features; the video model's own eval forward pass."""

    def __init__(self, model, baked_text: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.baked = baked_text is not None
        if self.baked:
            self.register_buffer("text_features", baked_text)
        self.input_names = ["video"] if self.baked else ["video", "text_features"]
        self.output_names = ["logits", *(["gates"] if model.mbgf is not None else []), "video_features"]
        batch = {0: torch.export.Dim("batch")}
        text_axes = {0: torch.export.Dim("classes")}
        if not self.baked and model.config.template_eval == "mean_softmax":
            text_axes[1] = torch.export.Dim("templates")
        self.dynamic_shapes = (batch,) if self.baked else (batch, text_axes)

    def forward(self, video: torch.Tensor, text_features: torch.Tensor | None = None):
        text = self.text_features if self.baked else text_features
        with _encoded_text(self.model):
            logits, details = self.model(video, text, return_details=True)
        gates = [details["gates"]] if "gates" in details else []
        return logits.float(), *gates, details["video_features"].float()


class TextGraph(nn.Module):
    """What ``model.text.onnx`` computes: CLIP's text encoder, tokens ``[N, 77]`` -> raw and unit
    features ``[N, E]``."""

    input_names = ["tokens"]
    output_names = ["text_features", "text_embeddings"]
    dynamic_shapes = ({0: torch.export.Dim("texts")},)

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor):
        features = self.model._encode_text(tokens).float()
        return features, F.normalize(features, dim=-1)


def metadata_props(description: dict) -> dict:
    """The file's metadata: ``mbgf`` (everything) and the keys a deployment reads on their own."""
    config = description["config"]
    return {"mbgf": description, "class_names": description["class_names"], "frames": config["frames"],
            "input_size": config["input_size"], "input_mean": config["input_mean"], "input_std": config["input_std"],
            "variant": config["variant"], "backbone": config["model"], "mbgf_fusion": config["mbgf"],
            "prompts": description["prompts"], "templates": description["templates"], "input": INPUT}


def export_graph(graph: nn.Module, inputs: tuple, path: Path, metadata: dict) -> None:
    """Export ``graph`` (its ``input_names``, ``output_names``, ``dynamic_shapes``) with ``metadata``
    (values as JSON), written atomically (``fileio.atomic_output``: the user's permissions, fsync, a full
    disk named)."""
    from mbgf_cli.fileio import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter():
        program = torch.onnx.export(graph.eval(), inputs, dynamo=True, input_names=list(graph.input_names),
                                    output_names=list(graph.output_names), dynamic_shapes=graph.dynamic_shapes,
                                    verbose=False)
    program.model.metadata_props.update({key: json.dumps(value) for key, value in metadata.items()})
    with atomic_output(path) as partial:
        program.save(partial, external_data=False)


@contextmanager
def _quiet_exporter():
    """The exporter's notes (optional libraries it skips, deprecations) are not the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# --------------------------------------------------------------------------------------------------
# An ONNX file as the predictor's model
# --------------------------------------------------------------------------------------------------


class OnnxVideoModel:
    """What ``mbgf_cli.inference`` uses of a video model, run by onnxruntime on the CPU:
    ``model(clips, class_tokens, return_details)`` -> logits (and ``{"gates"}``), ``encode_video``,
    ``encode_text``, ``config`` (frames, input size, mean/std), ``clip_config``, ``mbgf`` (None without
    gates). With the classes baked in, ``class_tokens`` must be tokens of those classes (any subset, in
    any order; a ``mean_softmax`` model: all of them), told apart by their tokens."""

    training = False

    def __init__(self, path: Path, session, meta: dict, text_session=None):
        import fusion
        from fusion.prompts import class_text_tokens

        self.path, self.session, self.meta, self.text_session = path, session, meta, text_session
        self.config = fusion.VideoModelConfig.from_dict(meta["config"])
        self.clip_config = self.config.clip_config
        self.output_names = [output.name for output in session.get_outputs()]
        self.mbgf = True if "gates" in self.output_names else None  # what --explain looks for
        self.takes_text = "text_features" in [i.name for i in session.get_inputs()]
        self.baked = {}
        self._text_cache = (None, None)
        if not self.takes_text:
            tokens = _padded(class_text_tokens(meta["class_names"], meta["prompts"], meta.get("templates")))
            self.baked = {_row_key(row): k for k, row in enumerate(tokens)}

    # the predictor moves and switches its model; this one stays on the CPU, always in eval mode
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def _classes(self, tokens: torch.Tensor) -> list[int] | None:
        """The baked classes that ``tokens`` are, in their order (None: all of them, in order)."""
        rows = [self.baked.get(_row_key(row)) for row in _padded(tokens)]
        if None in rows:
            raise UserError(f"{self.path} scores only the classes it was exported with "
                            f"({', '.join(self.meta['class_names'][:5])}{' ...' if len(self.baked) > 5 else ''}) "
                            "with their prompts; export with --free-text for other classes")
        if rows == list(range(len(self.baked))):
            return None
        if self.config.template_eval == "mean_softmax" and sorted(rows) != list(range(len(self.baked))):
            raise UserError(f"{self.path}: a mean_softmax model scores all of its exported classes together; "
                            "export with --free-text to score a subset")
        return rows

    def _run(self, clips: torch.Tensor, class_tokens: torch.Tensor | None) -> dict:
        feed = {"video": clips.detach().float().cpu().numpy()}
        if self.takes_text:
            text = self.encode_text(class_tokens) if class_tokens is not None else \
                torch.zeros(1, self.clip_config.embed_dim)
            if self.config.template_eval == "mean_text" and text.dim() == 3:
                text = text.mean(dim=1)  # the prompt ensemble, as the model's forward pass takes it
            elif self.config.template_eval == "mean_softmax" and text.dim() == 2:
                text = text.unsqueeze(1)
            feed["text_features"] = text.float().numpy()
        outputs = self.session.run(None, feed)
        return {name: torch.from_numpy(value).to(clips.device) for name, value in zip(self.output_names, outputs,
                                                                                       strict=True)}

    def __call__(self, clips: torch.Tensor, class_tokens: torch.Tensor, return_details: bool = False):
        columns = None if self.takes_text else self._classes(class_tokens)
        outputs = self._run(clips, class_tokens)
        logits = outputs["logits"] if columns is None else outputs["logits"][:, columns]
        if not return_details:
            return logits
        details = {"video_features": outputs["video_features"]}
        if "gates" in outputs:
            details["gates"] = outputs["gates"]
        return logits, details

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self._run(clips, None)["video_features"]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Raw text features ``[..., E]`` of tokens ``[..., L]``: the text encoder's, or the baked ones."""
        lead = tokens.shape[:-1]
        flat = _padded(tokens.reshape(-1, tokens.shape[-1]))
        if self.text_session is not None:
            key = (tuple(flat.shape), _row_key(flat))
            if self._text_cache[0] != key:  # the same classes for every batch: encoded once
                (features,) = self.text_session.run(["text_features"], {"tokens": flat.numpy()})
                self._text_cache = (key, torch.from_numpy(features))
            return self._text_cache[1].reshape(*lead, -1)
        raise UserError(f"{self.path} has no text encoder (exported without --free-text): it scores only its "
                        "own classes")


def _padded(tokens: torch.Tensor) -> torch.Tensor:
    """Token ids padded with zeros to 77 (the text encoder is causal: the features are the same)."""
    tokens = tokens.detach().cpu().long()
    return F.pad(tokens, (0, CONTEXT_LENGTH - tokens.shape[-1])) if tokens.shape[-1] < CONTEXT_LENGTH else tokens


def _row_key(row: torch.Tensor) -> bytes:
    return row.contiguous().numpy().tobytes()


@dataclass
class LoadedOnnx:
    model: OnnxVideoModel
    class_names: list[str]
    prompts: str
    templates: list[str] | None
    name: str


def load_onnx(path, prompts: str | None = None, frames: int | None = None, input_size: int | None = None) -> LoadedOnnx:
    """An ONNX file ``mbgf export`` wrote (and its ``.text.onnx`` when free-text) as the predictor's model."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"{path}: running an ONNX model needs onnxruntime: pip install 'mbgf[onnx]'") from None
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    session = _session(onnxruntime, path)
    meta = _mbgf_metadata(session)
    if meta is None or meta.get("kind") != "video":
        raise UserError(f"{path}: not a video model exported by mbgf export --format onnx (no mbgf metadata)")
    config = meta["config"]
    for option, given, own in (("--frames", frames, config["frames"]), ("--input-size", input_size,
                                                                        config["input_size"])):
        if given is not None and given != own:
            raise UserError(f"{option} {given}: {path} was exported for {own} (an ONNX file's shapes are fixed)")
    text_session = None
    if meta.get("free_text"):
        text_path = text_file_for(path)
        if not text_path.is_file():
            raise UserError(f"{path}: its text encoder {text_path} is missing (mbgf export --free-text writes both)")
        text_session = _session(onnxruntime, text_path)
    elif prompts is not None and prompts != meta["prompts"]:
        raise UserError(f"--prompts {prompts}: {path} has its classes' text baked in with --prompts {meta['prompts']};"
                        " export with --free-text to choose the prompts")
    model = OnnxVideoModel(path, session, meta, text_session)
    # As a checkpoint: the templates it recorded, unless --prompts asks for this project's own.
    templates = None if prompts and text_session is not None else meta.get("templates")
    name = f"{meta['name']} from {path} (ONNX, onnxruntime; epoch {meta.get('epoch')})"
    return LoadedOnnx(model, list(meta["class_names"]), prompts or meta["prompts"], templates, name)


def _session(onnxruntime, path: Path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors have no common type
        raise UserError(f"{path}: onnxruntime cannot load it ({' '.join(str(e).split())[:200]})") from None
