"""``--compile``: the video path compiled in place (checkpoint keys untouched), the same outputs as eager,
and one warning line then eager execution where the compiler fails."""

import json

import pytest
import torch

import fusion
from fusion.prompts import class_text_tokens
from mbgf_cli import compilation

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class CountingBackend:
    """A torch.compile backend that runs the captured graph as traced (no code generation: fast) and
    counts the graphs it was given, which proves the compiled path ran."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no working C++ compiler found\n(details on the next lines)")


def tiny_model():
    torch.manual_seed(0)
    return fusion.build_video_model(model="tiny", variant="clip", mbgf=True, frames=4, input_size=32).eval()


def inputs():
    clips = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return clips, class_text_tokens(["one", "two", "three"], "one")


def test_compiled_model_gives_eager_outputs_and_keeps_its_state_dict(monkeypatch):
    backend = CountingBackend()
    monkeypatch.setattr(compilation, "BACKEND", backend)
    eager, model = tiny_model(), tiny_model()
    keys = list(model.state_dict())
    compilation.compile_video_model(model)
    clips, tokens = inputs()
    with torch.no_grad():
        expected, got = eager(clips, tokens), model(clips, tokens)
    assert backend.graphs >= 1 and compilation.is_compiled(model)
    torch.testing.assert_close(got, expected)
    assert list(model.state_dict()) == keys  # no _orig_mod. prefix: a checkpoint is the same either way
    assert not any("_orig_mod" in k for k in model.state_dict())
    compilation.compile_video_model(model)  # applying it twice wraps once
    assert isinstance(model.encode_video.eager, type(eager.encode_video))


def test_compiled_training_step_matches_eager(monkeypatch):
    monkeypatch.setattr(compilation, "BACKEND", CountingBackend())
    grads = []
    for compiled in (False, True):
        model = tiny_model().train()
        model.freeze_text()
        if compiled:
            compilation.compile_video_model(model)
        clips, tokens = inputs()
        torch.nn.functional.cross_entropy(model(clips, tokens), torch.tensor([0, 2])).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_a_failing_compiler_warns_once_and_runs_eagerly(monkeypatch):
    monkeypatch.setattr(compilation, "BACKEND", failing_backend)
    lines = []
    eager, model = tiny_model(), tiny_model()
    compilation.compile_video_model(model, warn=lines.append)
    clips, tokens = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(clips, tokens), eager(clips, tokens))
        model(clips, tokens)
    assert lines == ["--compile: torch.compile failed here (RuntimeError: no working C++ compiler found); "
                     "running without it"]
    assert not compilation.is_compiled(model)


def test_the_callers_error_is_not_taken_for_a_compiler_failure(monkeypatch):
    monkeypatch.setattr(compilation, "BACKEND", CountingBackend())
    lines = []
    model = tiny_model()
    compilation.compile_video_model(model, warn=lines.append)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 4, 3, 32), inputs()[1])  # a clip of the wrong shape fails eagerly too
    assert lines == [] and compilation.is_compiled(model)


def test_train_and_eval_with_compile_write_the_same_checkpoint_and_numbers(toy_dataset, tmp_path, capsys,
                                                                          monkeypatch):
    from mbgf_cli.checkpoint import MODEL_FILE
    from mbgf_cli.precision import choose_amp
    from tests.test_train_support import TINY_RUN, read_metrics, run_cli, without_timing

    backend = CountingBackend()
    monkeypatch.setattr(compilation, "BACKEND", backend)
    runs, headers = {}, {}
    for compiled in (False, True):
        run = runs[compiled] = tmp_path / f"run-compiled-{compiled}"
        code, _, err = run_cli(["train", "--dataset", "synthetic", "--root", toy_dataset, *TINY_RUN, "--epochs", "1",
                                "--out", run, *(["--compile"] if compiled else [])], capsys)
        assert code == 0, err
        headers[compiled] = [line for line in err.splitlines() if line.startswith("precision: ")]
    assert backend.graphs >= 2  # the training graph and the evaluation graph went through the compiler
    reason = choose_amp("auto", torch.device("cpu"), "tiny", training=True)[1]
    assert headers[False] == [f"precision: {reason}"]
    assert headers[True] == [f"precision: {reason}; --compile: the video encoder is compiled at its first use"]
    assert without_timing(read_metrics(runs[True])) == without_timing(read_metrics(runs[False]))

    from safetensors.torch import load_file

    plain, compiled = (load_file(runs[c] / "last" / MODEL_FILE) for c in (False, True))
    assert list(compiled) == list(plain) and not any("_orig_mod" in key for key in compiled)
    for key in plain:
        torch.testing.assert_close(compiled[key], plain[key], msg=key)

    results = []
    for flags in ([], ["--compile"]):
        code, out, err = run_cli(["eval", "--checkpoint", runs[False] / "last", "--root", toy_dataset, "--workers", "0",
                                  "--json", *flags], capsys)
        assert code == 0, err
        reason = choose_amp("auto", torch.device("cpu"), "tiny")[1]
        assert f"precision: {reason}{'; --compile' if flags else ''}" in err.splitlines()
        results.append(json.loads(out))
    assert results[1] == results[0]
