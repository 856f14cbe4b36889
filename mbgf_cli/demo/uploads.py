"""Uploaded videos: bounded in size, checked for a video container, kept in one temporary folder.

A file is accepted when its name has a video extension and its first bytes are a video container's
(MP4/QuickTime, Matroska/WebM, AVI, MPEG, FLV, ASF). Both are checked before the model sees it, so an
HTML page saved as .mp4 or a photo renamed .avi gets one line saying what it is, not a decoder error.
Whether the stream inside decodes is the model's reader's call (a cut-off file is reported there).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from mbgf_cli.inference.inputs import VIDEO_EXTENSIONS  # the extensions `mbgf predict` looks for

HEAD_BYTES = 12  # enough for every signature below

# ISO base media (MP4, QuickTime, M4V): the first box's type follows its 4-byte size.
ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


class UploadError(Exception):
    """A file the demo refuses: ``status`` is the HTTP status, the message says why in one line."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def container_of(head: bytes) -> str | None:
    """The video container whose signature ``head`` (the file's first bytes) starts with, or None."""
    if head[4:8] in ISO_BOXES:
        return "MP4/QuickTime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "MPEG"
    if head.startswith(b"FLV"):
        return "FLV"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF/WMV"
    return None


def what_it_is(head: bytes) -> str:
    """A few words on a file that is no video container, from its first bytes."""
    known = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
             b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive"}
    for signature, name in known.items():
        if head.startswith(signature):
            return name
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "an HTML or XML page"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "data of an unknown kind"


def check_name(name: str) -> str:
    """The upload's extension, lower-cased, when it is a video's."""
    suffix = Path(name).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise UploadError(f"{name}: not a video file name (expected one of {' '.join(VIDEO_EXTENSIONS)})", 415)
    return suffix


def check_head(name: str, head: bytes) -> None:
    if container_of(head) is None:
        raise UploadError(f"{name}: not a video (the file is {what_it_is(head)}, not an MP4, QuickTime, "
                          f"Matroska/WebM, AVI, MPEG, FLV or ASF container)", 415)


def megabytes(nbytes: float) -> str:
    return f"{nbytes / 2**20:.3g} MB"


class UploadFolder:
    """One temporary folder for the server's uploads; each upload is a file in it, removed after its
    request; the folder goes when the server stops (``remove``)."""

    def __init__(self, max_bytes: int, parent: str | None = None):
        self.max_bytes = max_bytes
        self.path = Path(tempfile.mkdtemp(prefix="mbgf-demo-", dir=parent))

    async def receive(self, name: str, declared_size: str | None, chunks: AsyncIterator[bytes]) -> Path:
        """Write the upload ``name`` from ``chunks`` to a new file and return its path; refuse it, with the
        partial file removed, when it is too large, empty or not a video."""
        suffix = check_name(name)
        if declared_size is not None and declared_size.isdigit() and int(declared_size) > self.max_bytes:
            raise self.too_large(name, int(declared_size))
        path = self.path / f"{uuid.uuid4().hex}{suffix}"
        try:
            await self._write(name, path, chunks)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _write(self, name: str, path: Path, chunks: AsyncIterator[bytes]) -> None:
        size, head = 0, b""
        with open(path, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise self.too_large(name)
                if len(head) < HEAD_BYTES:
                    head += chunk[:HEAD_BYTES]
                    if len(head) >= HEAD_BYTES:  # refuse a non-video before reading the rest of it
                        check_head(name, head)
                out.write(chunk)
        if size == 0:
            raise UploadError(f"{name}: the file is empty (0 bytes)")
        if len(head) < HEAD_BYTES:
            check_head(name, head)

    def too_large(self, name: str, size: int | None = None) -> UploadError:
        """413: the size when the request declared it, else "larger than" the bound it crossed."""
        what = f"{megabytes(size)}" if size is not None else f"larger than {megabytes(self.max_bytes)}"
        return UploadError(f"{name}: the file is {what}; this server takes files up to "
                           f"{megabytes(self.max_bytes)} (mbgf demo --max-upload-mb)", 413)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
