"""``--compile``: torch.compile on a video model's video path, falling back to eager with one warning.

    compile_video_model(model)        # then train, evaluate, predict or embed with it as usual

What is compiled is ``model.encode_video`` (frames -> backbone -> temporal head -> MBGF), the part
that runs on every clip; the text side is left eager (it runs once per dataset: frozen class text
features are cached, and the cache's Python bookkeeping would only break the graph). The compiled
function is held by the model instance as an attribute, not as a wrapper module, so parameters,
``state_dict()`` keys and checkpoints are exactly those of the uncompiled model (no ``_orig_mod.``).

torch.compile compiles lazily, at the first call; where no compiler works (no C++ compiler for
CPU code, no triton for GPU code, a platform torch.compile does not support), that call fails.
The first failure prints one warning line and the model runs eagerly from then on.
"""

from __future__ import annotations

import torch

BACKEND = "inductor"  # torch.compile's default; tests substitute a cheaper one


def compile_video_model(model, warn=None) -> None:
    """Compile ``model.encode_video`` in place (see the module docstring). ``warn(line)`` reports a
    fallback to eager (default: the error console, in yellow)."""
    if isinstance(getattr(model, "encode_video", None), CompiledWithFallback):
        return
    model.encode_video = CompiledWithFallback(model.encode_video, warn)


def is_compiled(model) -> bool:
    """Whether ``compile_video_model`` was applied and the compiled path has not fallen back to eager."""
    compiled = model.__dict__.get("encode_video")
    return isinstance(compiled, CompiledWithFallback) and not compiled.failed


class CompiledWithFallback:
    """``fn`` compiled with torch.compile; if a call through the compiled function raises and the same
    call succeeds eagerly, the failure was the compiler's: warn once and stay eager. An error that
    eager execution raises too is the caller's, and propagates unchanged."""

    def __init__(self, fn, warn=None):
        self.eager = fn
        self.compiled = torch.compile(fn, backend=BACKEND)
        self.failed = False
        self._warn = warn

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - judged by whether eager execution succeeds
            result = self.eager(*args, **kwargs)
            self.failed = True
            self.warn(f"--compile: torch.compile failed here ({describe(error)}); running without it")
            return result

    def warn(self, line: str) -> None:
        if self._warn is not None:
            self._warn(line)
            return
        from mbgf_cli.console import err_console

        err_console.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)


def describe(error: BaseException) -> str:
    """The innermost cause of a compile failure in one short line: ``InvalidCxxCompiler: No working C++
    compiler found``."""
    while True:  # dynamo wraps the backend's error (inner_exception), inductor's chain their causes
        inner = getattr(error, "inner_exception", None) or error.__cause__
        if inner is None:
            break
        error = inner
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
