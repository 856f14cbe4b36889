"""CLIP weights: OpenAI's released files (downloaded, sha256-verified, cached) and local files.

A weights file may be OpenAI's TorchScript archive (read as data by :mod:`clip.safe_pickle`: none of
its code is compiled or run), a plain PyTorch state dict (read with
``torch.load(weights_only=True)``, so no pickled code runs), optionally wrapped in a dict under
``state_dict`` or ``model``, or a ``.safetensors`` file. The format is recognised from the content,
not the file name.
"""

import contextlib
import hashlib
import http.client
import os
import pickle
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from clip import safe_pickle
from clip.model import CLIP, NON_PARAMETER_KEYS, build_model
from clip.released import RELEASED, released_model

DEFAULT_BASE_URL = "https://openaipublic.azureedge.net/clip/models"
CHUNK_BYTES = 1 << 20


def available_models() -> list[str]:
    """Names :func:`load` downloads (their short names, b32, b16, l14, l14-336, work as well)."""
    return list(RELEASED)


def cache_dir() -> Path:
    """Where downloads go: ``$MBGF_CACHE/clip`` (default ``~/.cache/mbgf/clip``)."""
    return Path(os.environ.get("MBGF_CACHE") or "~/.cache/mbgf").expanduser() / "clip"


def model_url(name: str) -> str:
    """URL of a released model; ``$MBGF_CLIP_URL`` replaces OpenAI's host (a mirror, or a test server)."""
    model = released_model(name)
    base = (os.environ.get("MBGF_CLIP_URL") or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{model.sha256}/{model.filename}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(directory: Path):
    """Hold an exclusive lock on ``directory`` so that processes started together (torchrun ranks)
    download a file once instead of writing the same ``.part`` file at the same time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): go on unlocked
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def download(url: str, sha256: str, destination: str | Path, progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination`` unless a file with that sha256 is already there.

    Bytes go to ``<destination>.part``; an interrupted download raises ``ConnectionError`` and keeps
    the part, which the next call continues with an HTTP Range request. The file is moved into place
    only once its sha256 matches; on a mismatch the download is deleted and ``ValueError`` raised.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _locked(destination.parent):
        if destination.exists():
            if sha256_of(destination) == sha256:
                return destination
            warnings.warn(f"{destination}: sha256 does not match, downloading it again", stacklevel=2)
            destination.unlink()
        part = destination.with_name(destination.name + ".part")
        _fetch(url, part, progress)
        actual = sha256_of(part)
        if actual != sha256:
            part.unlink()
            raise ValueError(f"{url}: sha256 {actual} does not match the expected {sha256}; "
                             f"the download was deleted")
        os.replace(part, destination)
    return destination


def _fetch(url: str, part: Path, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (all of it when the part is empty or the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after the offset: the part holds the whole file already
            return
        raise ConnectionError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server sent the whole file: start the part again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                       disable=not progress, transient=True)
        with bar, open(part, "ab" if offset else "wb") as f:
            task = bar.add_task(f"downloading {url.rsplit('/', 1)[-1]}", total=total, completed=offset)
            try:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(task, completed=received)
            except (OSError, http.client.HTTPException):
                pass  # reported below with the byte count; what arrived stays in the part
    if total is not None and received < total:
        raise ConnectionError(f"{url}: download interrupted after {received:,} of {total:,} bytes; "
                              f"run again to resume from {part}")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (TorchScript archive, torch.save state dict, or safetensors).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it is none
    of these formats or holds something other than a name -> tensor mapping.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a weights file")
    if safe_pickle.is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise ValueError(f"{path}: unreadable safetensors file ({_first_line(e)})") from None
    if safe_pickle.is_torchscript_archive(path):
        try:  # read as data: torch.jit.load would compile and run the archive's code
            return safe_pickle.read_torchscript_state_dict(path)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{path}: unreadable TorchScript archive ({_first_line(e)})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's refusal advises weights_only=False, i.e. running the file's code: never. The restricted
        # reader names what the file tries to call instead (or reads it, with placeholders for classes).
        loaded = safe_pickle.load_file(path)
    except Exception as e:  # noqa: BLE001 - the unpickler fails in many ways on a file that is not a pickle
        raise ValueError(f"{path}: not a TorchScript archive, a PyTorch state dict or a safetensors file "
                         f"({_first_line(e)})") from None
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):  # training checkpoints often wrap the weights
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a state dict (name -> tensor)")
    bad = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor) and k not in NON_PARAMETER_KEYS]
    if bad:
        raise ValueError(f"{path}: not a state dict: {bad[0]!r} is a {type(loaded[bad[0]]).__name__}, "
                         f"not a tensor")
    return dict(loaded)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load(name_or_path: str | Path, device: str | torch.device = "cpu", strict: bool = True,
         progress: bool = True) -> CLIP:
    """A CLIP in eval mode from a released name (``ViT-B/16``, short ``b16``, ...) or a weights file.

    Names are downloaded once into :func:`cache_dir`. Errors name the file: ``FileNotFoundError``
    for a path that does not exist, ``ValueError`` for a file that is not CLIP weights (with the first
    missing/unexpected keys).
    """
    released = released_model(str(name_or_path))
    if released is not None:
        path = download(model_url(released.name), released.sha256, cache_dir() / released.filename,
                        progress=progress)
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            names = ", ".join(f"{m.name} ({m.short_name})" for m in RELEASED.values())
            raise FileNotFoundError(f"{name_or_path}: no such file, and not a CLIP model name (names: {names})")
    state_dict = load_state_dict(path)
    try:
        model = build_model(state_dict, strict=strict)
    except (ValueError, RuntimeError) as e:  # RuntimeError: a tensor of the wrong shape
        raise ValueError(f"{path}: {_first_line(e)}") from None
    return model.to(device)
