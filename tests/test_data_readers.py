"""Decoding: decord and PyAV agree, path = bytes, only picked frames, counts from the container or by decoding."""

import av
import numpy as np
import pytest
from videos import (
    frame_index,
    write_empty,
    write_image_as_video,
    write_text_as_video,
    write_truncated,
    write_video,
)

from mbgf_cli.data import readers
from mbgf_cli.data.readers import PyAVVideo, VideoError, open_video, probe, read_frames
from mbgf_cli.data.sources import FolderSource


def textured(num_frames=12, h=32, w=64, seed=0):
    """Frames with detail everywhere (gradients plus a moving square), so decoders cannot agree by luck."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    frames = np.zeros((num_frames, h, w, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = (xs * 4 + t * 9) % 256
        frames[t, ..., 1] = (ys * 6) % 256
        frames[t, ..., 2] = rng.integers(60, 200)
        frames[t, 8:20, 2 * t : 2 * t + 12] = 250
    return frames


def test_decord_and_pyav_give_the_same_frames(tmp_path):
    frames = textured()
    write_video(tmp_path / "v.mp4", frames=frames)
    picks = [0, 3, 3, 7, 11]
    a = open_video(str(tmp_path / "v.mp4"), "decord").get(picks)
    b = open_video(str(tmp_path / "v.mp4"), "pyav").get(picks)
    assert a.shape == b.shape == (5, 32, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same decoder library; only rounding may differ
    assert np.abs(a.astype(int) - frames[picks].astype(int)).mean() < 6  # and it is the video that was written


def test_bytes_and_path_decode_identically(tmp_path):
    write_video(tmp_path / "v.mp4", frames=textured())
    data = (tmp_path / "v.mp4").read_bytes()
    for decoder in ("decord", "pyav"):
        a = open_video(str(tmp_path / "v.mp4"), decoder).get([1, 9])
        b = open_video(data, decoder).get([1, 9])
        assert np.array_equal(a, b)


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
def test_read_frames_returns_the_picked_frames_in_the_asked_order(tmp_path, decoder):
    write_video(tmp_path / "v.mp4", num_frames=16)
    seen = []

    def pick(n):
        seen.append(n)
        return [15, 0, 7, 7]

    frames, n = read_frames(FolderSource(tmp_path), "v.mp4", pick, decoder)
    assert seen == [16] and n == 16
    assert [frame_index(f, 16) for f in frames] == [15, 0, 7, 7]


def test_container_without_a_frame_count_is_counted_by_decoding(tmp_path):
    # A raw H.264 stream has no container metadata: decord cannot open it, PyAV knows no count.
    path = tmp_path / "raw.h264"
    frames = np.stack([np.full((32, 32, 3), 16 + 20 * t, np.uint8) for t in range(10)])
    with av.open(str(path), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        s.options = {"bf": "0", "preset": "ultrafast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert PyAVVideo(str(path)).num_frames is None
    out, n = read_frames(FolderSource(tmp_path), "raw.h264", lambda n: [0, n - 1], "auto")
    assert n == 10
    assert abs(float(out[1].mean()) - (16 + 20 * 9)) < 4


@pytest.mark.parametrize("decoder", ["auto", "decord"])
def test_wrong_container_count_is_corrected(tmp_path, monkeypatch, decoder):
    # A container that claims more frames than it has: reading fails, the frames are counted, sampling is redone.
    write_video(tmp_path / "v.mp4", num_frames=12)
    real_init = readers.DecordVideo.__init__

    def lying_init(self, data):
        real_init(self, data)
        self.num_frames = 40

    monkeypatch.setattr(readers.DecordVideo, "__init__", lying_init)
    asked = []

    def pick(n):
        asked.append(n)
        return [n - 1]

    frames, n = read_frames(FolderSource(tmp_path), "v.mp4", pick, decoder)
    assert asked == [40, 12] and n == 12
    assert frame_index(frames[0], 12) == 11


def test_auto_falls_back_to_pyav_when_decord_fails(tmp_path, monkeypatch):
    write_video(tmp_path / "v.mp4", num_frames=8)

    def broken(self, data):
        raise VideoError("cannot open", "decord says no")

    monkeypatch.setattr(readers.DecordVideo, "__init__", broken)
    frames, _ = read_frames(FolderSource(tmp_path), "v.mp4", lambda n: [5], "auto")
    assert frame_index(frames[0], 8) == 5
    with pytest.raises(VideoError, match="decord says no"):
        read_frames(FolderSource(tmp_path), "v.mp4", lambda n: [5], "decord")


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
def test_broken_files_raise_groupable_reasons(tmp_path, decoder):
    write_truncated(tmp_path / "cut.mp4")
    write_truncated(tmp_path / "cut_faststart.mp4", num_frames=32, keep=0.6, faststart=True)
    write_empty(tmp_path / "empty.mp4")
    write_text_as_video(tmp_path / "page.mp4")
    source = FolderSource(tmp_path)
    expected = {
        "cut.mp4": {"cannot open"},
        "cut_faststart.mp4": {"cannot open", "decode error"},  # decord refuses it; PyAV opens it, then fails
        "empty.mp4": {"empty file"},
        "page.mp4": {"cannot open"},
        "gone.mp4": {"missing"},
    }
    for name, reasons in expected.items():
        with pytest.raises(VideoError) as e:
            read_frames(source, name, lambda n: [0, n - 1], decoder)
        assert e.value.reason in reasons, (name, str(e.value))
    with pytest.raises(VideoError, match="decode error"):
        PyAVVideo(str(tmp_path / "cut_faststart.mp4")).count()


def test_probe_decodes_everything_and_reports_size(tmp_path):
    write_video(tmp_path / "v.mp4", num_frames=9, size=(32, 64))
    assert probe(FolderSource(tmp_path), "v.mp4") == {"frames": 9, "fps": 25.0, "height": 32, "width": 64}
    write_truncated(tmp_path / "cut.mp4")
    with pytest.raises(VideoError):
        probe(FolderSource(tmp_path), "cut.mp4")


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
def test_a_still_image_named_like_a_video_is_refused(tmp_path, decoder):
    # Issue 15, item 11: a PNG renamed .mp4 was read as a one-frame video, every clip that frame repeated.
    write_image_as_video(tmp_path / "photo.mp4")
    write_video(tmp_path / "single.mp4", num_frames=1)
    source = FolderSource(tmp_path)
    for name in ("photo.mp4", "single.mp4"):
        with pytest.raises(VideoError) as e:
            read_frames(source, name, lambda n: [0] * 4, decoder)
        assert e.value.reason in ({"still image"} if decoder != "decord" or name == "single.mp4"
                                  else {"still image", "cannot open"}), str(e.value)
        with pytest.raises(VideoError) as e:
            probe(source, name, decoder)
        assert e.value.reason in {"still image", "cannot open"}
    with pytest.raises(VideoError, match=r"still image \(png"):
        probe(source, "photo.mp4", "auto")
