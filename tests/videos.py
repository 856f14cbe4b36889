"""Small test videos written with PyAV, for every test that needs real files.

    from videos import write_video, frame_index    # pytest puts tests/ on sys.path (no __init__.py)

    write_video(tmp_path / "a.mp4", num_frames=12, size=(32, 64))   # 12 frames, 32 high, 64 wide
    frames = ...decode...                                            # uint8 [T, H, W, 3]
    frame_index(frames[3], num_frames=12)                           # -> the index of that frame

By default frame ``t`` is a flat grey of level ``frame_level(t, num_frames)`` (evenly spaced levels
16..235), so a test can tell which frame a decoder returned even after lossy compression. Pass
``frames=`` to write your own uint8 ``[T, H, W, 3]`` array instead. Encoding is H.264 (yuv420p, no
B-frames, a keyframe every ``gop`` frames): what every decoder reads and seeks frame-accurately.

``write_truncated``, ``write_text_as_video``, ``write_empty`` and ``write_image_as_video`` make the
broken files a real dataset has (a cut-off download, an HTML error page saved as .mp4, a zero-byte
file, a still image renamed .mp4); ``write_truncated_tar`` an archive cut off in a member.
``write_dataset`` writes a whole tiny dataset in the seed layout.

Sizes: keep videos tiny (32x32 .. 64x64, 8-16 frames). decord 0.6 fails on some narrow frame sizes
(32 high x 48 wide); multiples of 32 in width are safe.
"""

from pathlib import Path

import av
import numpy as np


def frame_level(t: int, num_frames: int) -> int:
    """The grey level of frame ``t`` in a default test video of ``num_frames`` frames."""
    return int(round(16 + 219 * t / max(num_frames - 1, 1)))


def frame_index(frame, num_frames: int) -> int:
    """The index of a decoded default-pattern frame (``[H, W, 3]`` uint8 array or tensor)."""
    mean = float(np.asarray(frame, dtype=np.float64).mean())
    levels = np.array([frame_level(t, num_frames) for t in range(num_frames)])
    return int(np.abs(levels - mean).argmin())


def index_frames(num_frames: int, size=(32, 32)) -> np.ndarray:
    """The default pattern: ``[T, H, W, 3]`` uint8, frame ``t`` flat grey at ``frame_level(t)``."""
    h, w = size
    levels = np.array([frame_level(t, num_frames) for t in range(num_frames)], dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, h, w, 3)).copy()


def write_video(path, num_frames: int = 8, size=(32, 32), fps: int = 25, frames=None, gop: int = 8,
                faststart: bool = False) -> Path:
    """Write an H.264 mp4 at ``path`` (parents created) and return the path.

    ``size`` is (height, width), both even; ``frames`` (optional) a uint8 ``[T, H, W, 3]`` array that
    replaces the default frame-index pattern (then ``num_frames`` and ``size`` are taken from it).
    ``faststart`` puts the index (moov) before the data, as streaming sites do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = index_frames(num_frames, size) if frames is None else np.ascontiguousarray(frames, dtype=np.uint8)
    _, h, w, _ = frames.shape
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "g": str(gop), "bf": "0", "preset": "ultrafast", "threads": "1"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated(path, num_frames: int = 16, size=(32, 32), keep: float = 0.5, faststart: bool = False) -> Path:
    """A video cut off after ``keep`` of its bytes (an interrupted download). Without ``faststart`` the
    index is lost (the file does not open); with it the file opens and fails part-way through."""
    path = write_video(path, num_frames=num_frames, size=size, faststart=faststart)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_text_as_video(path) -> Path:
    """A text file named like a video (an error page saved under the video's name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<html><body>404 Not Found</body></html>\n")
    return path


def write_empty(path) -> Path:
    """A zero-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_image_as_video(path, size=(32, 32)) -> Path:
    """A PNG image (written by FFmpeg's PNG encoder) under a video's name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[: h // 2] = 200
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = w, h, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated_tar(path, folder, keep: float = 0.5) -> Path:
    """``tar cf`` of every file under ``folder`` (member names relative to it), cut off after ``keep``
    of its members' bytes (not counting the zero padding at its end): an interrupted copy or download."""
    import tarfile

    path = Path(path)
    with tarfile.open(path, "w") as tar:
        for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            tar.add(f, arcname=f.relative_to(folder).as_posix())
    with tarfile.open(path) as tar:
        end = max(m.offset_data + m.size for m in tar)
    data = path.read_bytes()
    path.write_bytes(data[: int(end * keep)])
    return path


def write_dataset(root, num_classes: int = 2, videos_per_class: int = 3, num_frames: int = 8, size=(32, 32),
                  val_per_class: int = 1) -> Path:
    """A tiny dataset in the seed layout under ``root``: ``videos/c<k>/v<i>.mp4``, ``train.txt``,
    ``val.txt`` (the first ``val_per_class`` videos of each class), ``labels.csv`` (``class 0``, ...).
    Videos of class k are the default frame-index pattern tinted by class (red channel = 40 * k)."""
    root = Path(root)
    train, val = [], []
    for k in range(num_classes):
        for i in range(videos_per_class):
            frames = index_frames(num_frames, size)
            frames[..., 0] = np.uint8(min(255, 40 * k))
            rel = f"c{k}/v{i}.mp4"
            write_video(root / "videos" / rel, frames=frames)
            (val if i < val_per_class else train).append(f"{rel} {k}\n")
    (root / "train.txt").write_text("".join(train))
    (root / "val.txt").write_text("".join(val))
    (root / "labels.csv").write_text("id,name\n" + "".join(f"{k},class {k}\n" for k in range(num_classes)))
    return root
