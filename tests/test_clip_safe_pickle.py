"""Reading foreign checkpoint files without running code from them (clip.safe_pickle)."""

import collections
import copyreg
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from reference_models import openai_archive_state_dict, write_torchscript_archive
from safetensors.torch import save_file
from yacs.config import CfgNode as CN

import clip
from clip import safe_pickle


class Recipe(dict):
    """A class this reader does not know (a dict subclass with attributes, as configs often are)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_immutable"] = True


def xclip_config():
    """A real yacs CfgNode shaped like X-CLIP's config (configs/k400/16_8.yaml over config.py's defaults)."""
    config = CN()
    config.DATA = CN()
    config.DATA.NUM_FRAMES, config.DATA.INPUT_SIZE, config.DATA.DATASET = 8, 224, "kinetics400"
    config.MODEL = CN()
    config.MODEL.ARCH, config.MODEL.DROP_PATH_RATE, config.MODEL.PRETRAINED = "ViT-B/16", 0.0, None
    config.TRAIN = CN()
    config.TRAIN.LR, config.TRAIN.EPOCHS = 8e-6, 30
    config.freeze()
    return config


def as_dict(node):
    return {k: as_dict(v) if isinstance(v, CN) else v for k, v in node.items()}


def _runs(callable_, marker):
    """An object whose unpickling calls ``callable_`` so that ``marker`` gets created."""
    args = {
        os.system: (f"touch {marker}",),
        eval: (f"__import__('pathlib').Path({str(marker)!r}).touch()",),
        subprocess.call: (["touch", str(marker)],),
    }[callable_]

    class Payload:
        def __reduce__(self):
            return callable_, args

    return Payload()


@pytest.mark.parametrize("callable_", [os.system, eval, subprocess.call], ids=["os.system", "eval", "subprocess"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_a_command_is_refused(tmp_path, callable_, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"model": {"w": torch.ones(2)}, "config": _runs(callable_, marker)}, path)
    else:  # a bare pickle (tensors pickled this way name torch's unsafe _load_from_bytes: refused too)
        path.write_bytes(pickle.dumps({"epoch": 1, "config": _runs(callable_, marker)}))
    with pytest.raises(ValueError) as error:
        safe_pickle.load_file(path)
    message = str(error.value)
    assert message.startswith(f"{path}: refusing to call ")
    assert callable_.__name__ in message and "\n" not in message
    assert not marker.exists()


def test_a_torchscript_archive_whose_data_pickle_would_run_a_command_is_refused(tmp_path):
    good = tmp_path / "good.pt"
    write_torchscript_archive({"w": torch.ones(2)}, good)
    evil, marker = tmp_path / "evil.pt", tmp_path / "marker"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_runs(os.system, marker), protocol=2)
            target.writestr(item, data)
    with pytest.raises(ValueError, match="refusing to call .*system"):
        safe_pickle.load_file(evil)
    with pytest.raises(ValueError, match="evil.pt: unreadable TorchScript archive .*refusing to call .*system"):
        clip.load_state_dict(evil)  # clip's own loader reads archives the same way, never with torch.jit.load
    assert not marker.exists()


def test_an_unknown_class_becomes_an_opaque_record_and_tensors_load(tmp_path):
    config = Recipe(DATA=Recipe(NUM_FRAMES=8, INPUT_SIZE=224), MODEL=Recipe(ARCH="ViT-B/16"), TAGS=(1, 2.5))
    weights = {"visual.proj": torch.randn(4, 3).half(), "mit.positional_embedding": torch.randn(1, 8, 3)}
    path = tmp_path / "xclip.pth"
    torch.save({"model": weights, "config": config, "epoch": 3, "max_accuracy": 80.5}, path)
    with pytest.raises(pickle.UnpicklingError):  # what torch's own safe loader says about this file
        torch.load(path, weights_only=True)

    loaded = safe_pickle.load_file(path)
    assert loaded["epoch"] == 3 and loaded["max_accuracy"] == 80.5
    for key, tensor in weights.items():
        assert loaded["model"][key].dtype == tensor.dtype and torch.equal(loaded["model"][key], tensor)
    opaque = loaded["config"]
    assert isinstance(opaque, safe_pickle.Opaque) and not isinstance(opaque, Recipe)
    assert opaque.qualname == f"{__name__}.Recipe"
    assert opaque.to_plain() == {"DATA": {"NUM_FRAMES": 8, "INPUT_SIZE": 224}, "MODEL": {"ARCH": "ViT-B/16"},
                                 "TAGS": [1, 2.5]}


def test_placeholders_never_import_the_module_they_name():
    # NEWOBJ of a class in a module that does not exist: an import attempt would raise.
    data = b"\x80\x02c" + b"no_such_module_mbgf\nThing\n" + b")\x81}X\x01\x00\x00\x00aK\x01sb."
    obj = safe_pickle.loads(data)
    assert obj.qualname == "no_such_module_mbgf.Thing" and obj.state == {"a": 1}
    assert "no_such_module_mbgf" not in sys.modules
    with pytest.raises(safe_pickle.RefusedPickle, match="no_such_module_mbgf.Thing"):
        safe_pickle.loads(b"\x80\x02cno_such_module_mbgf\nThing\n)R.")  # calling it (REDUCE) is refused


def test_usable_as_torch_load_pickle_module(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"a": torch.arange(6).view(2, 3), "b": [1, "x"]}, path)
    loaded = torch.load(path, pickle_module=safe_pickle, weights_only=False)
    assert torch.equal(loaded["a"], torch.arange(6).view(2, 3)) and loaded["b"] == [1, "x"]


def test_legacy_torch_save_format(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(3), "config": Recipe(x=1)}, path, _use_new_zipfile_serialization=False)
    loaded = safe_pickle.load_file(path)
    assert torch.equal(loaded["a"], torch.ones(3)) and loaded["config"].to_plain() == {"x": 1}


def test_torchscript_archive_gives_its_state_dict_without_plain_attributes(tmp_path):
    state = openai_archive_state_dict()
    path = tmp_path / "ViT-tiny.pt"
    # A tensor attribute that is not a parameter or buffer (as attn_mask in a scripted CLIP) is not read.
    write_torchscript_archive(state, path, {"transformer.resblocks.0.attn_mask": torch.zeros(77, 77)})
    loaded = safe_pickle.load_file(path)
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key


def test_safetensors_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.ones(2, 2)}, str(path))
    assert torch.equal(safe_pickle.load_file(path)["x"], torch.ones(2, 2))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_unreadable_files_are_one_line_errors_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        safe_pickle.load_file(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        safe_pickle.load_file(tmp_path / "nothing.pt")


def test_byte_strings_in_protocol_2_pickles_read():
    data = pickle.dumps({"blob": b"\x00\xffabc"}, protocol=2)
    assert safe_pickle.load(io.BytesIO(data)) == {"blob": b"\x00\xffabc"}


# ------------------------------------------------------------------------------ real files (issue 12)


@pytest.mark.parametrize("protocol", [None, 1, 2, 4, 5], ids=lambda p: "default" if p is None else f"protocol-{p}")
def test_a_real_yacs_config_reads_as_its_nested_dict_at_every_protocol(tmp_path, protocol):
    """torch.save's default protocol (2) names __builtin__.set (a CfgNode's bookkeeping holds sets);
    protocol 1 rebuilds it through copy_reg._reconstructor over __builtin__.dict. (torch cannot read
    its own protocol-0 files: no such file exists.)"""
    config, path = xclip_config(), tmp_path / "xclip.pth"
    weights = {"visual.proj": torch.randn(4, 3).half()}
    extra = {} if protocol is None else {"pickle_protocol": protocol}
    torch.save({"model": weights, "config": config, "epoch": 29, "max_accuracy": 83.2}, path, **extra)
    if protocol in (None, 1, 2):  # what the pickle names, as the issue reports it
        names = set(re.findall(rb"(__builtin__|copy_reg)\n(\w+)", zipfile.ZipFile(path).read("xclip/data.pkl")))
        assert (b"__builtin__", b"set") in names
        assert ((b"copy_reg", b"_reconstructor") in names) == (protocol == 1)

    loaded = safe_pickle.load_file(path)
    assert torch.equal(loaded["model"]["visual.proj"], weights["visual.proj"]) and loaded["epoch"] == 29
    assert loaded["config"].qualname == "yacs.config.CfgNode"
    assert safe_pickle.plain(loaded["config"]) == as_dict(config)


def test_an_empty_yacs_node_is_an_empty_dict(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"config": CN()}, path)
    assert safe_pickle.plain(safe_pickle.load_file(path)["config"]) == {}


def test_sets_frozensets_ordered_dicts_and_numpy_arrays_read(tmp_path):
    content = {"s": {1, 2}, "f": frozenset({"a"}), "o": collections.OrderedDict(b=1, a=2),
               "history": np.linspace(0, 1, 5), "count": np.int64(7)}
    for protocol in (1, 2, 5):
        path = tmp_path / f"misc{protocol}.pth"
        torch.save(content, path, pickle_protocol=protocol)
        loaded = safe_pickle.load_file(path)
        assert loaded["s"] == {1, 2} and loaded["f"] == frozenset({"a"})
        assert list(loaded["o"].items()) == [("b", 1), ("a", 2)]
        assert np.array_equal(loaded["history"], content["history"]) and loaded["count"] == 7


def _live(payload_bytes, marker):
    """The payload is real: Python's own unpickler runs it (creates the marker), which is then removed."""
    loaded = pickle.loads(payload_bytes)
    if isinstance(loaded["config"], subprocess.Popen):
        loaded["config"].wait()
    assert marker.exists()
    marker.unlink()


class _PopenViaReconstructor:
    """What a protocol 0-2 pickle can say: copy_reg._reconstructor(Popen, Popen, args) builds a Popen,
    i.e. runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return copyreg._reconstructor, (subprocess.Popen, subprocess.Popen, ["touch", str(self.marker)])


@pytest.mark.parametrize("protocol", [0, 2])
def test_copy_reg_reconstructor_is_refused_for_a_class_that_runs_code(tmp_path, protocol):
    marker = tmp_path / "marker"
    data = pickle.dumps({"config": _PopenViaReconstructor(marker)}, protocol=protocol)
    assert b"copy_reg\n_reconstructor" in data and b"commands\nPopen" in data  # Python 2's names
    _live(data, marker)
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"refusing to call copyreg._reconstructor with base subprocess.Popen"):
        safe_pickle.load_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("callable_", [eval, os.system], ids=["__builtin__.eval", "os.system"])
def test_protocol_2_payloads_are_refused_under_their_python_3_names(tmp_path, callable_):
    marker = tmp_path / "marker"
    data = pickle.dumps({"config": _runs(callable_, marker)}, protocol=2)
    if callable_ is eval:
        assert b"__builtin__\neval" in data  # the Python 2 name, translated before the allowlist
    _live(data, marker)
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"refusing to call ({'builtins.eval' if callable_ is eval else '(posix|nt).system'})"):
        safe_pickle.load_file(path)
    assert not marker.exists()


def test_python_2_names_are_translated_by_the_standard_librarys_table():
    assert safe_pickle.python3_name("__builtin__", "set") == ("builtins", "set")
    assert safe_pickle.python3_name("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    assert safe_pickle.python3_name("__builtin__", "unicode") == ("builtins", "str")
    assert safe_pickle.resolve("__builtin__", "set") is set
    assert safe_pickle.resolve("__builtin__", "eval").qualname == "builtins.eval"  # a placeholder


def test_reconstructor_only_records_placeholders():
    # A class the allowlist resolves (a real function here) is not a record: refused.
    with pytest.raises(safe_pickle.RefusedPickle, match="_reconstructor on .*_latin1_encode"):
        safe_pickle.loads(b"ccopy_reg\n_reconstructor\n(c_codecs\nencode\nc__builtin__\nobject\nNtR.")
