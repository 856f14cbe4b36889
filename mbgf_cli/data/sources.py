"""Where the videos are: a folder, an uncompressed tar, or a zip, read in place (never extracted).

``open_source(root)`` accepts, in this order:
  - a dataset folder holding ``videos/`` (option 1 of the seed layout),
  - a dataset folder holding ``videos.tar`` or ``videos.zip`` (option 2),
  - a ``.tar`` / ``.zip`` file,
  - any other folder: the videos folder itself.
List paths are relative to the videos folder, or to the archive's root (a leading ``videos/`` that
every member shares is dropped, so both ``tar cf videos.tar videos`` and ``tar cf videos.tar -C videos .``
work).

Archive members are indexed once (name -> byte offset, size) and read with one seek and one read,
so a DataLoader worker reads a video from a 100 GB tar as fast as from a folder. Members with an
absolute path or '..' are refused. Compressed tars cannot be read by offset and are refused, and so
is a truncated tar (a member cut off, or no end-of-archive blocks), naming what is wrong; zip
members should be stored (``zip -0``); deflated ones are still read, through ``zipfile``, more slowly.
"""

import os
import struct
import tarfile
import zipfile
from pathlib import Path

from mbgf_cli.data.annotations import check_relative
from mbgf_cli.errors import UserError


class FolderSource:
    """Videos as files under a folder."""

    kind = "folder"

    def __init__(self, folder):
        self.root = Path(folder)
        self.where = str(self.root)

    def __contains__(self, name: str) -> bool:
        return (self.root / name).is_file()

    def local_path(self, name: str) -> str | None:
        """A file-system path the decoders can open directly (folders only)."""
        return str(self.root / name)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


class _ArchiveSource:
    """An archive indexed as name -> (data offset, size), read by seek + read.

    The file handle is opened lazily and reopened in a new process, because DataLoader workers
    are forked with a copy of the dataset and must not share one file position.
    """

    kind = "archive"

    def __init__(self, path):
        self.path = Path(path)
        self.where = str(self.path)
        self.members: dict[str, tuple[int, int]] = {}  # name -> (offset of the data, size)
        self._handle = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None
        return state

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def local_path(self, name: str) -> str | None:
        return None

    def size(self, name: str) -> int:
        return self.members[name][1]

    def names(self) -> list[str]:
        return sorted(self.members)

    def read(self, name: str) -> bytes:
        try:
            offset, size = self.members[name]
        except KeyError:
            raise FileNotFoundError(f"{self.path}: no member {name!r}") from None
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = open(self.path, "rb"), os.getpid()
        # os.pread: one system call, no shared file position between threads.
        data = os.pread(self._handle.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{self.path}: member {name!r} is cut short ({len(data)} of {size} bytes)")
        return data

    def _add(self, raw_name: str, offset: int, size: int):
        name = check_relative(raw_name, f"{self.path}: member")
        self.members[name] = (offset, size)

    def _strip_common_videos_prefix(self):
        if self.members and all(n.startswith("videos/") for n in self.members):
            self.members = {n[len("videos/") :]: v for n, v in self.members.items()}


class TarSource(_ArchiveSource):
    """An uncompressed tar (``tar cf``)."""

    def __init__(self, path):
        super().__init__(path)
        with open(self.path, "rb") as f:
            head = f.read(512)
        size = self.path.stat().st_size
        compression = next((name for magic, name in _COMPRESSED if head.startswith(magic)), None)
        if compression is not None:
            raise UserError(
                f"{self.path}: a {compression}-compressed tar, which cannot be read in place; write an "
                f"uncompressed one with 'tar cf' (or 'mbgf prepare-data ... --pack tar')"
            )
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                self._index(tar, size)
                end = tar.offset  # where the end-of-archive blocks start
        except tarfile.ReadError as e:
            if head[257:262] != b"ustar" and not self.members:
                raise UserError(f"{self.path}: not a tar archive ({e})") from None
            raise UserError(
                f"{self.path}: truncated or damaged after {len(self.members)} readable member(s) ({e}; "
                f"the file has {size} bytes)"
            ) from None
        # tarfile stops quietly at a header cut in two; a whole tar ends with zero blocks.
        with open(self.path, "rb") as f:
            f.seek(end)
            tail = f.read(512)
        if len(tail) < 512 or tail.count(0) != 512:
            raise UserError(
                f"{self.path}: truncated or damaged after {len(self.members)} readable member(s): no end-of-archive "
                f"blocks at byte {end} of {size} (an interrupted copy?)"
            )
        self._strip_common_videos_prefix()


    def _index(self, tar: tarfile.TarFile, size: int) -> None:
        for member in tar:
            if not member.isfile():
                continue
            if member.offset_data + member.size > size:
                raise UserError(
                    f"{self.path}: truncated: member {member.name!r} needs bytes up to "
                    f"{member.offset_data + member.size}, the file ends at {size} (an interrupted copy?)"
                )
            self._add(member.name, member.offset_data, member.size)


# The first bytes of the compressed formats tar is commonly squeezed with.
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
               (b"\x04\x22\x4d\x18", "lz4"))


class ZipSource(_ArchiveSource):
    """A zip; stored members are read by offset, deflated ones through ``zipfile``."""

    def __init__(self, path):
        super().__init__(path)
        self.compressed: set[str] = set()
        try:
            with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as f:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if info.compress_type == zipfile.ZIP_STORED:
                        self._add(info.filename, _zip_data_offset(f, info), info.file_size)
                    else:
                        self._add(info.filename, -1, info.file_size)
                        self.compressed.add(check_relative(info.filename, str(self.path)))
        except zipfile.BadZipFile as e:
            raise UserError(f"{self.path}: not a zip file, or a truncated one ({e})") from None
        if self.members and all(n.startswith("videos/") for n in self.members):
            self.compressed = {n[len("videos/") :] for n in self.compressed}
            self._zip_prefix = "videos/"
        else:
            self._zip_prefix = ""
        self._strip_common_videos_prefix()
        self._zipfile = None

    def __getstate__(self):
        state = super().__getstate__()
        state["_zipfile"] = None
        return state

    def read(self, name: str) -> bytes:
        if name not in self.compressed:
            return super().read(name)
        if self._zipfile is None or self._pid != os.getpid():
            self._zipfile, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zipfile.read(self._zip_prefix + name)


def _zip_data_offset(f, info: zipfile.ZipInfo) -> int:
    # The local file header (30 bytes + name + extra field) precedes the data; its extra field may
    # differ from the central directory's, so read its lengths from the local header itself.
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise UserError(f"{f.name}: member {info.filename!r} has a damaged local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def open_source(root):
    """The video source for a dataset root (see the module docstring for what is accepted)."""
    root = Path(root)
    if root.is_dir():
        if (root / "videos").is_dir():
            return FolderSource(root / "videos")
        if (root / "videos.tar").is_file():
            return TarSource(root / "videos.tar")
        if (root / "videos.zip").is_file():
            return ZipSource(root / "videos.zip")
        return FolderSource(root)
    if root.is_file():
        if root.suffix == ".tar":
            return TarSource(root)
        if root.suffix == ".zip":
            return ZipSource(root)
        raise UserError(f"{root}: expected a folder, a .tar or a .zip of videos")
    raise UserError(f"{root}: no such dataset folder or archive")
