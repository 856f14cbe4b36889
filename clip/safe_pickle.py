"""Reading pickled checkpoints without running code from them.

A pickle is a small program: it names callables (``module.name``) and calls them, which is how a
crafted ``.pt`` file runs ``os.system``. ``torch.load(weights_only=True)`` allows only torch's own
rebuild functions and refuses the whole file when it meets any other class, e.g. the yacs
``CfgNode`` that X-CLIP stores beside its weights. This module reads such files anyway:

- :class:`Unpickler` resolves only an allowlist (torch's tensor rebuild functions, storages, dtypes,
  ``OrderedDict``, sets, numpy arrays ...). Any other ``module.name`` becomes a
  placeholder class, and nothing is ever imported. Creating an instance of it the way pickle recreates
  plain objects (``NEWOBJ``, or ``copyreg._reconstructor`` over ``object``/``dict``/``list`` in protocols
  0 and 1: no code of the class runs) gives an :class:`Opaque` object that records the class name and
  its content (a yacs ``CfgNode`` reads as its nested dict); *calling* it (``REDUCE``: how
  ``os.system``, ``eval``, ``subprocess.Popen`` ... get run) raises :class:`RefusedPickle`.
- Protocols 0-2 (``torch.save``'s default is 2) name Python 2's modules: ``__builtin__.set``,
  ``copy_reg._reconstructor``. These are translated to Python 3's names with the standard library's
  own table (``_compat_pickle``, what ``pickle`` itself uses) before the allowlist is consulted, so
  ``__builtin__.eval`` is ``builtins.eval``: not allowed, refused when called.
- TorchScript archives (OpenAI's CLIP files) are read without ``torch.jit.load``, which compiles the
  archive's code and runs methods such as ``__setstate__``: ``data.pkl`` goes through the same
  Unpickler, and each module's tensors are named from the ``__parameters__`` / ``__buffers__``
  declarations of its class in the archive's ``code/`` (read as text).

:func:`load` picks the right path for a file. This module is also usable as
``torch.load(f, pickle_module=clip.safe_pickle, weights_only=False)``.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch


class RefusedPickle(pickle.UnpicklingError):
    """The pickle tries to call something that is not on the allowlist."""

    def __init__(self, qualname: str):
        super().__init__(f"refusing to call {qualname} (only tensors, containers, numbers and strings "
                         f"are read; this file tries to run code)")
        self.qualname = qualname


# --------------------------------------------------------------------------------------------------
# Placeholders for classes that are not read
# --------------------------------------------------------------------------------------------------


class _PlaceholderType(type):
    """Metaclass of placeholder classes: calling one (pickle's REDUCE) is refused."""

    def __call__(cls, *args, **kwargs):
        raise RefusedPickle(cls.qualname)


# Dict subclasses whose attributes are bookkeeping, not content.
RECORDED_AS_DICTS = frozenset({"yacs.config.CfgNode"})


class Opaque(metaclass=_PlaceholderType):
    """An object of a class that is not read (e.g. ``yacs.config.CfgNode``): its class name and the
    state pickle gave it, for inspection only. Nothing of the original class runs."""

    qualname = "Opaque"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.state, self.items, self.elements = args, None, {}, []
        return self

    # What pickle does to a fresh object: BUILD, SETITEMS (dict subclasses), APPENDS (list subclasses).
    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"

    def to_plain(self) -> Any:
        """The recorded content as plain Python (dict items first, then list elements, then state); a
        yacs ``CfgNode`` (X-CLIP's and ViFi-CLIP's config) is its nested dict, even when empty."""
        if self.items or self.qualname in RECORDED_AS_DICTS:
            return {str(k): plain(v) for k, v in self.items.items()}
        if self.elements:
            return [plain(v) for v in self.elements]
        return plain(self.state)


def plain(value: Any) -> Any:
    """Containers of numbers and strings as they are; Opaque objects as their content; tensors as a
    short description. For recording a foreign file's config as JSON."""
    if isinstance(value, Opaque):
        return value.to_plain()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if type(value).__module__ == "numpy":  # numpy scalars and arrays (logged metrics)
        if getattr(value, "ndim", 0) == 0:
            return plain(value.item())
        return plain(value.tolist()) if value.size <= 16 else f"array{list(value.shape)}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


_placeholders: dict[str, type] = {}


def placeholder_class(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    if qualname not in _placeholders:
        _placeholders[qualname] = _PlaceholderType(name, (Opaque,), {"__module__": module, "qualname": qualname})
    return _placeholders[qualname]


# --------------------------------------------------------------------------------------------------
# The allowlist
# --------------------------------------------------------------------------------------------------


def _latin1_encode(text, encoding="latin1"):
    # Protocol 2 (torch.save's default) writes bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickle(f"_codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


def _reconstructor(cls, base, state):
    """copyreg._reconstructor (how protocols 0 and 1 recreate plain objects): the real one calls
    ``base.__new__(cls, state)`` and ``base.__init__``, i.e. any constructor a file names. Here ``cls``
    must be a placeholder (the object is recorded, never built) and ``base`` object, dict or list
    (whose content ``state`` is recorded as the object's items or elements)."""
    if not isinstance(cls, _PlaceholderType):
        raise RefusedPickle(f"copyreg._reconstructor on {_name_of(cls)} (only plain records are read)")
    if base not in (object, dict, list):
        raise RefusedPickle(f"copyreg._reconstructor with base {_name_of(base)}")
    record = cls.__new__(cls)
    if base is dict and isinstance(state, dict):
        record.items.update(state)
    elif base is list and isinstance(state, list):
        record.elements.extend(state)
    elif state is not None:
        raise RefusedPickle(f"copyreg._reconstructor of {cls.qualname} from a {type(state).__name__}")
    return record


def _name_of(obj) -> str:
    if isinstance(obj, _PlaceholderType):
        return obj.qualname
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _allowed() -> dict[tuple[str, str], Any]:
    import numpy

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): bytearray,
        # the bases copyreg._reconstructor names (see there); calling them builds a plain container
        ("builtins", "object"): object,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("_codecs", "encode"): _latin1_encode,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        # numpy scalars (e.g. a metric saved as numpy.float64): rebuilt from raw bytes, no code involved
        ("numpy", "dtype"): numpy.dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        # numpy arrays (mmengine's logged history in mmaction2 checkpoints): an empty array, then
        # ndarray.__setstate__ with the raw bytes
        ("numpy", "ndarray"): numpy.ndarray,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
        ("numpy.core.numeric", "_frombuffer"): _numpy_from_buffer,  # protocol 5
        ("numpy._core.numeric", "_frombuffer"): _numpy_from_buffer,
    }
    if hasattr(torch._utils, "_rebuild_tensor_v3"):
        allowed[("torch._utils", "_rebuild_tensor_v3")] = torch._utils._rebuild_tensor_v3
    return allowed


def _numpy_array(cls, shape, dtype):
    import numpy

    if cls is not numpy.ndarray:
        raise RefusedPickle(f"numpy.core.multiarray._reconstruct of {_name_of(cls)}")
    return numpy.ndarray.__new__(numpy.ndarray, shape, dtype)


def _numpy_from_buffer(buffer, dtype, shape, order):
    import numpy

    if not isinstance(dtype, numpy.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise RefusedPickle("numpy.core.numeric._frombuffer")
    return numpy.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype, data=None):
    import numpy

    if not isinstance(dtype, numpy.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise RefusedPickle("numpy.core.multiarray.scalar")
    return numpy.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED: dict[tuple[str, str], Any] | None = None


def python3_name(module: str, name: str) -> tuple[str, str]:
    """``module.name`` as Python 3 spells it: protocols 0-2 name Python 2's modules (``__builtin__``,
    ``copy_reg``), translated by the standard library's own compatibility table, as ``pickle`` does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def resolve(module: str, name: str) -> Any:
    """What ``module.name`` means in a restricted pickle: an allowed object, a torch dtype, or a
    placeholder class. Never imports anything."""
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed()
    module, name = python3_name(module, name)
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    return placeholder_class(module, name)


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds tensors, containers, numbers and strings only (see the module
    docstring). torch.load subclasses it and resolves storage classes itself before calling this."""

    def find_class(self, module: str, name: str) -> Any:
        return resolve(module, name)


def load(file, **kwargs) -> Any:
    """``pickle.load`` with :class:`Unpickler` (what ``torch.load`` calls on a ``pickle_module``)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs) -> Any:
    return Unpickler(io.BytesIO(data), **kwargs).load()


# --------------------------------------------------------------------------------------------------
# TorchScript archives
# --------------------------------------------------------------------------------------------------

# Storage classes named in pickles, by the dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ArchiveStorage:
    """The raw bytes of one tensor record of an archive, and the dtype they hold."""

    def __init__(self, data: bytes, dtype: torch.dtype):
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        self.elements = raw.view(dtype)


def _rebuild_archive_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, _ArchiveStorage):
        raise RefusedPickle("torch._utils._rebuild_tensor_v2 on something that is not a storage")
    return torch.as_strided(storage.elements, tuple(size), tuple(stride), offset)


class _ArchiveUnpickler(Unpickler):
    """Reads a TorchScript archive's ``data.pkl``: storages come from the archive's ``data/`` records."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_archive_tensor
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        record = f"{self.prefix}data/{pid[2]}"
        try:
            data = self.archive.read(record)
        except KeyError:
            raise pickle.UnpicklingError(f"the archive has no record {record}") from None
        return _ArchiveStorage(data, pid[1])


_CLASS_DECLARATION = re.compile(
    r"^class (\w+)\(Module\):\n  __parameters__ = \[([^\]]*)\]\n  __buffers__ = \[([^\]]*)\]", re.M)


def _declared_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """Qualified TorchScript class name -> the names of its parameters and buffers, read from the text
    of ``code/**.py`` (e.g. ``code/__torch__/torch/nn/modules/linear.py`` declares
    ``__torch__.torch.nn.modules.linear.Linear``)."""
    declared = {}
    for record in archive.namelist():
        if not (record.startswith(prefix + "code/") and record.endswith(".py")):
            continue
        module = record[len(prefix + "code/"):-len(".py")].replace("/", ".")
        text = archive.read(record).decode("utf-8", errors="replace")
        for name, parameters, buffers in _CLASS_DECLARATION.findall(text):
            declared[f"{module}.{name}"] = set(re.findall(r'"([^"]+)"', parameters + buffers))
    return declared


def is_torchscript_archive(path) -> bool:
    """torch.save and TorchScript both write zip archives; only TorchScript's holds constants.pkl."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def read_torchscript_state_dict(path) -> dict[str, torch.Tensor]:
    """The ``state_dict()`` of a TorchScript archive (parameters and buffers, by dotted name), read
    without loading the module or running any of its code."""
    with zipfile.ZipFile(path) as archive:
        data_records = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not data_records:
            raise pickle.UnpicklingError("a TorchScript archive without data.pkl")
        prefix = data_records[0][:-len("data.pkl")]
        if archive.namelist().count(prefix + "byteorder") and archive.read(prefix + "byteorder") != b"little":
            raise pickle.UnpicklingError("a big-endian archive (not supported)")
        declared = _declared_tensors(archive, prefix)
        root = _ArchiveUnpickler(io.BytesIO(archive.read(data_records[0])), archive, prefix).load()
    state: dict[str, torch.Tensor] = {}
    _collect_module_tensors(root, "", declared, state)
    return state


def _collect_module_tensors(module: Any, prefix: str, declared: dict, state: dict) -> None:
    if not isinstance(module, Opaque) or not isinstance(module.state, dict):
        raise pickle.UnpicklingError(f"expected a TorchScript module at {prefix or 'the root'}, "
                                     f"found {type(module).__name__}")
    names = declared.get(module.qualname)  # None when the class text was not found: keep every tensor
    for name, value in module.state.items():
        if isinstance(value, torch.Tensor) and (names is None or name in names):
            state[prefix + name] = value
        elif isinstance(value, Opaque) and value.qualname.startswith("__torch__"):
            _collect_module_tensors(value, f"{prefix}{name}.", declared, state)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def is_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with "{"."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= Path(path).stat().st_size


def load_file(path) -> Any:
    """The content of a weights file, read without running code from it.

    - safetensors: the name -> tensor dict;
    - a TorchScript archive: its module's state dict (see :func:`read_torchscript_state_dict`);
    - a ``torch.save`` file: ``torch.load(weights_only=True)``, and where that refuses a class (e.g.
      X-CLIP's config) this module's restricted Unpickler, with unknown objects as :class:`Opaque`.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it is none of
    these or tries to run code.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a weights file")
    try:
        if is_safetensors(path):
            from safetensors.torch import load_file as load_safetensors

            return load_safetensors(str(path), device="cpu")
        if is_torchscript_archive(path):
            return read_torchscript_state_dict(path)
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols it did not write
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            pass  # a class outside torch's allowlist: read again, with placeholders for such classes
        import clip.safe_pickle as this_module

        return torch.load(path, map_location="cpu", pickle_module=this_module, weights_only=False)
    except RefusedPickle as e:
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other failure to parse is a damaged or foreign file
        message = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{path}: not a readable PyTorch, TorchScript or safetensors file ({message[:300]})") from None
