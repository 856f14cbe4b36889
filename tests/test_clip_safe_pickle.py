"""Reading foreign checkpoint files without running code from them (clip.safe_pickle)."""

import io
import os
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch
from reference_models import openai_archive_state_dict, write_torchscript_archive
from safetensors.torch import save_file

import clip
from clip import safe_pickle


class CfgNode(dict):
    """Stands in for yacs' CfgNode (a dict subclass with attributes), which X-CLIP saves with its weights."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_immutable"] = True


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
    config = CfgNode(DATA=CfgNode(NUM_FRAMES=8, INPUT_SIZE=224), MODEL=CfgNode(ARCH="ViT-B/16"), TAGS=(1, 2.5))
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
    assert isinstance(opaque, safe_pickle.Opaque) and not isinstance(opaque, CfgNode)
    assert opaque.qualname == f"{__name__}.CfgNode"
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
    torch.save({"a": torch.ones(3), "config": CfgNode(x=1)}, path, _use_new_zipfile_serialization=False)
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
