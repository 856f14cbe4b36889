"""The parallel video work of ``mbgf prepare-data``: decoding every listed video (``--check``, cached and
resumable) and re-encoding to a short side (``--resize``, byte-reproducible)."""

import json
import os
from fractions import Fraction
from pathlib import Path

import av

from mbgf_cli.console import progress
from mbgf_cli.data.readers import VideoError, probe
from mbgf_cli.data.sources import FolderSource, open_source
from mbgf_cli.fileio import atomic_write_json
from mbgf_cli.processes import process_pool


def parallel(fn, jobs: list, workers: int, description: str):
    """``fn`` over ``jobs`` in a process pool (in order), with a progress bar."""
    results = []
    with progress() as bar:
        task = bar.add_task(description, total=len(jobs), info="")
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.advance(task)
        else:
            with process_pool(min(workers, len(jobs))) as pool:
                for result in pool.map(fn, jobs, chunksize=4):
                    results.append(result)
                    bar.advance(task)
    return results


_SOURCES: dict[str, object] = {}  # per worker process: a tar is indexed once, not once per video


def _source(root: str):
    if root not in _SOURCES:
        _SOURCES[root] = open_source(root)
    return _SOURCES[root]


def _probe_job(job) -> tuple[bool, str, str]:
    root, rel, decoder = job
    try:
        probe(_source(root), rel, decoder)
        return True, "", ""
    except VideoError as e:
        return False, e.reason, e.detail


def check_videos(source, rels: list[str], out: Path, workers: int, decoder: str = "auto") -> dict[str, str]:
    """Decode every listed video of ``source`` in parallel; ``{rel: reason}`` of the failures.

    Results are cached in ``out/.check.json`` by path, size and modification time (member offset for
    archives), so an interrupted or repeated check resumes where it stopped.
    """
    cache_file = out / ".check.json"
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (json.JSONDecodeError, OSError):
        cache = {}
    if isinstance(source, FolderSource):
        root = str(source.root)

        def stamp(rel):
            try:
                st = (source.root / rel).stat()
                return f"{st.st_size}:{st.st_mtime_ns}:{decoder}"
            except OSError:
                return "missing"
    else:
        root = str(source.path)
        archive_time = source.path.stat().st_mtime_ns

        def stamp(rel):
            return f"{source.members[rel]}:{archive_time}:{decoder}" if rel in source else "missing"

    stamps = {rel: stamp(rel) for rel in rels}
    todo = [rel for rel in rels if cache.get(rel, {}).get("stamp") != stamps[rel]]
    # Saved every 256 videos, so that an interruption loses little.
    for start in range(0, len(todo), 256):
        chunk = todo[start : start + 256]
        label = "checking videos" if len(todo) <= 256 else f"checking videos {start + 1}-{start + len(chunk)} of {len(todo)}"
        results = parallel(_probe_job, [(root, rel, decoder) for rel in chunk], workers, label)
        for rel, (ok, reason, detail) in zip(chunk, results, strict=True):
            cache[rel] = {"stamp": stamps[rel], "ok": ok, "reason": reason, "detail": detail}
        atomic_write_json(cache_file, cache, sort_keys=True)
    return {rel: _reason_text(cache[rel]) for rel in rels if not cache[rel]["ok"]}


def _reason_text(entry: dict) -> str:
    return f"{entry['reason']} ({entry['detail']})" if entry.get("detail") else entry["reason"]


def resize_job(job) -> tuple[bool, str]:
    src, dst, short_side = job
    try:
        resize_video(src, dst, short_side)
        return True, ""
    except VideoError as e:
        return False, str(e)


def resize_video(src, dst, short_side: int, gop: int = 16) -> None:
    """Re-encode ``src`` to an H.264 mp4 at ``dst`` whose shorter side is ``short_side`` (even sizes),
    every frame kept, no audio, a keyframe every ``gop`` frames (cheap seeking), no B-frames.
    The same source gives the same bytes, whatever the process did before and however many cores."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    try:
        source = av.open(str(src))
    except Exception as e:
        raise VideoError("cannot open", getattr(e, "strerror", None) or str(e)) from None
    try:
        with source:
            if not source.streams.video:
                raise VideoError("no video stream")
            stream = source.streams.video[0]
            if source.format.name == "image2" or source.format.name.endswith("_pipe"):
                raise VideoError("still image", f"{stream.codec_context.name} image")
            stream.thread_count = 1  # one process per video already keeps every core busy
            h, w = stream.codec_context.height, stream.codec_context.width
            if not h or not w:
                raise VideoError("cannot open", "no frame size")
            scale = short_side / min(h, w)
            out_w, out_h = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
            rate = stream.average_rate or stream.guessed_rate or 25
            with av.open(str(tmp), mode="w", format="mp4") as sink:
                out = sink.add_stream("libx264", rate=rate)
                out.width, out.height, out.pix_fmt = out_w, out_h, "yuv420p"
                out.options = {"preset": "veryfast", "tune": "fastdecode", "crf": "23", "g": str(gop), "bf": "0",
                               "threads": "1", "x264-params": X264_REPRODUCIBLE}
                frames = _encode_all(source, stream, sink, out, rate)
                if frames == 0:
                    raise VideoError("no frames")
                if frames == 1:
                    raise VideoError("still image", "1 frame")
                for packet in out.encode():
                    sink.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


def _encode_all(source, stream, sink, out, rate) -> int:
    """Decode every frame of ``stream``, scale it to ``out``'s size and encode it; the frame count."""
    frames = 0
    try:
        for frame in source.decode(stream):
            image = frame.reformat(width=out.width, height=out.height, format="yuv420p", interpolation="AREA",
                                   threads=1)
            # Renumbered 0, 1, 2, ... at the source's average rate: every frame kept, in order.
            image.pts, image.time_base = frames, 1 / Fraction(rate)
            for packet in out.encode(image):
                sink.mux(packet)
            frames += 1
    except av.error.EOFError:
        pass
    except Exception as e:
        raise VideoError("decode error", getattr(e, "strerror", None) or str(e)) from None
    return frames


# x264's lookahead (behind mb-tree rate control and scene-cut detection) reads memory that earlier
# work of the process left behind, so a video came out differently from one run to the next. Without
# it the bytes depend on the input alone; keyframes still come every ``gop`` frames.
X264_REPRODUCIBLE = "rc-lookahead=0:mbtree=0:scenecut=0"
