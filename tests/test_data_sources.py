"""Video sources: folder, tar and zip read in place by offset; unsafe members refused."""

import io
import tarfile
import zipfile

import pytest
import torch
from videos import write_dataset, write_truncated_tar, write_video

from mbgf_cli.data import VideoDataset, open_source
from mbgf_cli.data.sources import FolderSource, TarSource, ZipSource
from mbgf_cli.errors import UserError


def make_tar(path, folder, prefix="", mode="w"):
    with tarfile.open(path, mode) as tar:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            tar.add(f, arcname=prefix + f.relative_to(folder).as_posix())
    return path


def make_zip(path, folder, compression=zipfile.ZIP_STORED, prefix=""):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, arcname=prefix + f.relative_to(folder).as_posix())
    return path


@pytest.fixture
def folder(tmp_path):
    write_video(tmp_path / "vids" / "a b" / "one.mp4", num_frames=8)
    write_video(tmp_path / "vids" / "two.mp4", num_frames=12)
    return tmp_path / "vids"


@pytest.mark.parametrize("prefix", ["", "videos/", "./"])
def test_tar_members_read_by_offset_equal_the_files(tmp_path, folder, prefix):
    source = TarSource(make_tar(tmp_path / "v.tar", folder, prefix))
    assert source.names() == ["a b/one.mp4", "two.mp4"]
    for name in source.names():
        assert source.read(name) == (folder / name).read_bytes()
        assert source.size(name) == (folder / name).stat().st_size
    assert "two.mp4" in source and "three.mp4" not in source


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_members_stored_or_deflated(tmp_path, folder, compression):
    source = ZipSource(make_zip(tmp_path / "v.zip", folder, compression, prefix="videos/"))
    assert source.names() == ["a b/one.mp4", "two.mp4"]
    for name in source.names():
        assert source.read(name) == (folder / name).read_bytes()


def test_archive_reader_survives_pickling(tmp_path, folder):
    import pickle

    source = TarSource(make_tar(tmp_path / "v.tar", folder))
    source.read("two.mp4")  # opens a handle; a copy sent to a worker must not carry it
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read("two.mp4") == (folder / "two.mp4").read_bytes()


@pytest.mark.parametrize("bad", ["/etc/passwd.mp4", "../escape.mp4", "a/../../escape.mp4"])
def test_unsafe_members_are_refused(tmp_path, bad):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(bad)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(UserError) as e:
        TarSource(path)
    assert str(path) in str(e.value)
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(zipfile.ZipInfo(bad), b"abc")
    with pytest.raises(UserError):
        ZipSource(zpath)


def test_compressed_tar_is_refused_with_advice(tmp_path, folder):
    path = make_tar(tmp_path / "videos.tar", folder, mode="w:gz")
    with pytest.raises(UserError, match="uncompressed"):
        TarSource(path)


def test_open_source_resolution(tmp_path, folder):
    root = tmp_path / "ds"
    root.mkdir()
    assert isinstance(open_source(folder), FolderSource)  # a videos folder itself
    make_tar(root / "videos.tar", folder)
    assert isinstance(open_source(root), TarSource)
    assert isinstance(open_source(root / "videos.tar"), TarSource)
    (root / "videos").mkdir()
    assert open_source(root).root == root / "videos"  # videos/ wins over videos.tar
    with pytest.raises(UserError, match="no such dataset"):
        open_source(tmp_path / "nothing")


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_dataset_from_archive_equals_dataset_from_folder(tmp_path, archive):
    root = write_dataset(tmp_path / "ds", num_classes=2, videos_per_class=2)
    packed = tmp_path / "packed"
    packed.mkdir()
    if archive == "tar":
        make_tar(packed / "videos.tar", root / "videos")
    else:
        make_zip(packed / "videos.zip", root / "videos")
    (packed / "train.txt").write_text((root / "train.txt").read_text())
    a = VideoDataset(root, "train.txt", 2, frames=4, input_size=32, train=True, seed=3)
    b = VideoDataset(packed, "train.txt", 2, frames=4, input_size=32, train=True, seed=3)
    assert len(a) == len(b) == 2
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1:] == b[i][1:]
    assert b.failures() == []


@pytest.mark.parametrize("keep", [0.03, 0.5, 0.8])
def test_truncated_tar_is_called_truncated(tmp_path, folder, keep):
    # Issue 15, item 10: a tar cut off by an interrupted copy was called "compressed".
    path = write_truncated_tar(tmp_path / "videos.tar", folder, keep=keep)
    with pytest.raises(UserError) as e:
        TarSource(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "truncated" in message and "compressed" not in message


def test_a_file_that_is_no_tar_is_called_so(tmp_path):
    path = tmp_path / "videos.tar"
    path.write_bytes(b"<html>not found</html>\n" * 50)
    with pytest.raises(UserError, match="not a tar archive"):
        TarSource(path)
