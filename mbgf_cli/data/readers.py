"""Decoding the sampled frames of one video: decord first, PyAV as the fallback.

    frames, num_frames = read_frames(source, "a/b.mp4", pick=lambda n: sample(n), decoder="auto")

``pick(num_frames) -> indices`` is called with the video's frame count, so the caller samples
without knowing the video in advance, and only those frames are decoded (decord's ``get_batch``
seeks to the keyframe before each and decodes from there; PyAV decodes forward and converts only
the picked frames to RGB).

decoder="auto"   decord; PyAV when decord cannot open or decode the file.
decoder="decord" decord decodes (PyAV only counts frames when the container's count is wrong).
decoder="pyav"   PyAV only.

The frame count comes from the container. Containers lie (a raw .h264 stream has none, a .mkv only
a duration, a re-muxed file a stale count), so when the count is missing, or reading the sampled
frames fails, the frames are counted by decoding the whole video and the sampling is redone with
the true count. A video that cannot be opened or that fails to decode before its end is an error
(``VideoError``, with a short reason that ``--check`` groups by): a truncated download is rejected,
not silently shortened. So is a still image named like a video (a photo saved as .mp4): FFmpeg
opens it as a one-frame video, and every clip would be that frame repeated.

Decoders run one thread each: parallelism comes from DataLoader workers, one video per worker.
"""

import io
import os
from contextlib import contextmanager

import av
import decord
import numpy as np

decord.logging.set_level(decord.logging.QUIET)  # its ffmpeg chatter would flood the console from every worker

DECODERS = ("auto", "decord", "pyav")


class VideoError(Exception):
    """A video that cannot be read. ``reason`` is short and groupable ("cannot open", "decode error")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecordVideo:
    """A decord ``VideoReader`` on a path or on bytes (tar/zip members)."""

    name = "decord"

    def __init__(self, data):
        uri = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
        try:
            with _quiet_stderr():
                self._reader = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
        except Exception as e:  # decord raises RuntimeError, DECORDError, AssertionError
            raise VideoError("cannot open", error_line(e)) from None
        self.num_frames = len(self._reader)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps() or 0.0)  # asked for by --check only, not per clip

    def get(self, indices) -> np.ndarray:
        unique = sorted(set(int(i) for i in indices))
        try:
            with _quiet_stderr():
                batch = self._reader.get_batch(unique).asnumpy()
        except Exception as e:
            raise VideoError("decode error", error_line(e)) from None
        pos = {i: k for k, i in enumerate(unique)}
        return batch[[pos[int(i)] for i in indices]]



class PyAVVideo:
    """A PyAV container on a path or on bytes; decodes forward, converts only the wanted frames."""

    name = "pyav"

    def __init__(self, data):
        self._data = data
        with self._open() as container:
            stream = container.streams.video[0]
            # FFmpeg reads a lone image through an image demuxer ("png_pipe", "jpeg_pipe", "image2").
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise VideoError("still image", f"{stream.codec_context.name} image")
            self.fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frames = int(stream.frames or 0)
            if frames <= 0 and stream.duration and stream.time_base and self.fps:
                frames = int(round(float(stream.duration * stream.time_base) * self.fps))
            self.num_frames = frames or None  # None: unknown, count by decoding

    def _open(self):
        source = io.BytesIO(self._data) if isinstance(self._data, (bytes, bytearray)) else str(self._data)
        try:
            container = av.open(source, mode="r")
        except FileNotFoundError:
            raise VideoError("missing") from None
        except Exception as e:
            raise VideoError("cannot open", error_line(e)) from None
        if not container.streams.video:
            container.close()
            raise VideoError("no video stream")
        container.streams.video[0].thread_count = 1
        return container

    def _decode(self, container):
        return decode_frames(container, container.streams.video[0])

    def get(self, indices) -> np.ndarray:
        wanted = set(int(i) for i in indices)
        got: dict[int, np.ndarray] = {}
        with self._open() as container:
            for t, frame in enumerate(self._decode(container)):
                if t in wanted:
                    got[t] = frame.to_ndarray(format="rgb24")
                    if len(got) == len(wanted):
                        break
        if len(got) != len(wanted):
            raise VideoError("decode error", f"frame {min(wanted - set(got))} is past the end of the video")
        return np.stack([got[int(i)] for i in indices])

    def count(self) -> int:
        with self._open() as container:
            return sum(1 for _ in self._decode(container))


def open_video(data, decoder: str = "auto"):
    """A decoder on ``data`` (a path, or the bytes of a video): ``.num_frames``, ``.fps``, ``.get(indices)``."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "pyav":
        return PyAVVideo(data)
    try:
        return DecordVideo(data)
    except VideoError:
        if decoder == "decord":
            raise
        return PyAVVideo(data)  # its error message says why better than decord's "Error reading ..."


def load_bytes_or_path(source, name: str):
    """What the decoders take for a listed video: a path for folders, the bytes for archives.

    Missing and empty files are reported here, by name, before any decoder guesses at them.
    """
    try:
        if name not in source:
            raise VideoError("missing")
        if source.size(name) == 0:
            raise VideoError("empty file", "0 bytes")
        path = source.local_path(name)
        return path if path is not None else source.read(name)
    except OSError as e:
        raise VideoError("unreadable", error_line(e)) from None


def read_frames(source, name: str, pick, decoder: str = "auto"):
    """Decode the frames ``pick(num_frames)`` of video ``name`` in ``source``.

    Returns ``(frames uint8 [len(indices), H, W, 3], num_frames)``. Raises ``VideoError``.
    """
    data = load_bytes_or_path(source, name)
    video = open_video(data, decoder)
    num_frames = video.num_frames if video.num_frames is not None else _count(data)
    if num_frames == 1:
        _refuse_still(_count(data))  # the container's count may be wrong: believe the decoded one
    return _get(video, data, decoder, pick, num_frames)


def _get(video, data, decoder: str, pick, num_frames: int):
    try:
        return video.get(pick(num_frames)), num_frames
    except VideoError as first:
        # The container's count may be wrong: count by decoding (PyAV); if it differs, sample again.
        counted = _count(data)
        if counted != num_frames:
            reader = video if decoder == "decord" or video.name == "pyav" else PyAVVideo(data)
            return reader.get(pick(counted)), counted
        if decoder == "auto" and video.name == "decord":
            return PyAVVideo(data).get(pick(counted)), counted  # decord cannot decode it, PyAV can
        raise first from None


def _count(data) -> int:
    counted = PyAVVideo(data).count()
    if counted == 0:
        raise VideoError("no frames")
    return counted


def _refuse_still(num_frames: int) -> None:
    if num_frames == 1:
        raise VideoError("still image", "1 frame")


def probe(source, name: str, decoder: str = "auto") -> dict:
    """Open and decode every frame of one video (what ``prepare-data --check`` does); raises ``VideoError``.

    Returns ``{"frames", "fps", "height", "width"}``. Every frame is decoded, since a cut-off file
    often opens fine and fails only near its end; then the first and last frames are read the way
    the dataset reads them.
    """
    data = load_bytes_or_path(source, name)
    video = open_video(data, decoder)
    if decoder == "decord":
        num_frames = video.num_frames
        for start in range(0, num_frames, 32):
            video.get(range(start, min(num_frames, start + 32)))
    else:
        num_frames = _count(data)
    _refuse_still(num_frames)
    frames, num_frames = _get(video, data, decoder, lambda n: [0, n - 1], num_frames)
    return {"frames": num_frames, "fps": video.fps, "height": int(frames.shape[1]), "width": int(frames.shape[2])}


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment: decord's C++ logger prints "ERROR opening ..." for every
    bad file whatever its log level, and the dataset already says it once, in one clean line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def decode_frames(container, stream):
    """The frames of ``stream`` in decoding order, a broken stream as a ``VideoError`` (the end of a
    truncated file is its end)."""
    try:
        yield from container.decode(stream)
    except av.error.EOFError:
        return
    except Exception as e:
        raise VideoError("decode error", error_line(e)) from None


def error_line(e: BaseException) -> str:
    if isinstance(e, av.error.FFmpegError) and e.strerror:
        return str(e.strerror)  # without the errno and the (long) file name
    text = str(e).strip().splitlines()
    text = text[-1] if text else type(e).__name__
    return text[:200]
