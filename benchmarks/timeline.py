"""Memory of ``mbgf predict --timeline`` on a long video: peak RSS on a short and on a long generated
video, and their ratio, measured in one run.

    python benchmarks/timeline.py                         # 1 minute vs 1 hour, 64 px at 8 fps
    python benchmarks/timeline.py --short 0.1 --long 0.5 --json

Each video is generated here (64 x 64 px, a square sweeping over a gradient, H.264 through PyAV) and
its timeline computed in a process of its own (``Predictor.timeline``, 2 s windows every 1 s, the
synthetic default's architecture untrained: memory does not depend on the weights). The process
reports its peak RSS (``ru_maxrss``) and its baseline: the peak after loading the model and running a
timeline over a video of a full batch of windows, so that what remains is what the long video's length adds. Flat
memory is a ``growth`` (peak minus baseline) that does not scale with the video: the ratio of the two
videos' peaks stays near 1 while their lengths differ 60 times. The child also counts the frames it
decoded: every frame once (up to the last frame a window samples).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 64


def write_long_video(path: Path, seconds: float, fps: int) -> int:
    """A ``seconds`` long video, written a frame at a time (memory does not grow with it); its frames."""
    frames = max(2, int(round(seconds * fps)))
    ramp = np.linspace(30, 200, SIZE, dtype=np.float32)
    background = np.stack([np.add.outer(ramp, ramp[::-1]) / 2] * 3, axis=-1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(8 * fps), "bf": "0", "crf": "28"}
        for t in range(frames):
            frame = background.copy()
            x = (3 * t) % (SIZE - 12)
            frame[20:32, x:x + 12] = (230, 60, 40) if (t // (10 * fps)) % 2 else (40, 60, 230)
            image = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args) -> None:
    """In its own process: the model, a warm-up timeline, then the measured one."""
    import torch

    from mbgf_cli.data.windows import DecodeStats
    from mbgf_cli.inference import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu", amp="off")
    predictor.timeline(args.warmup, window=args.window, stride=args.stride, batch_size=args.batch_size)
    baseline = peak_rss_mib()
    stats = DecodeStats()
    timeline = predictor.timeline(args.child, window=args.window, stride=args.stride, batch_size=args.batch_size,
                                  stats=stats)
    print(json.dumps({"windows": len(timeline.spans), "decoded": stats.decoded, "converted": stats.converted,
                      "peak_held": stats.peak_held, "baseline_rss_mib": round(baseline, 1),
                      "peak_rss_mib": round(peak_rss_mib(), 1)}))


def measure(video: Path, args, checkpoint: Path, warmup: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(video), "--checkpoint", str(checkpoint),
                           "--warmup", str(warmup), "--window", str(args.window), "--stride", str(args.stride),
                           "--batch-size", str(args.batch_size)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the timeline of {video} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=1.0, help="Minutes of the short video.")
    parser.add_argument("--long", type=float, default=60.0, help="Minutes of the long video.")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from predict import default_model

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = default_model(folder)
        warmup = folder / "warmup.mp4"  # windows enough for a full batch: the model's buffers at their size
        write_long_video(warmup, args.window + args.stride * (args.batch_size + 1), args.fps)
        result = {"setting": {"size": SIZE, "fps": args.fps, "window_s": args.window, "stride_s": args.stride,
                              "batch_size": args.batch_size, "model": "tiny CLIP+MBGF, 8x48, untrained"}}
        for name, minutes in (("short", args.short), ("long", args.long)):
            video = folder / f"{name}.mp4"
            frames = write_long_video(video, 60 * minutes, args.fps)
            result[name] = {"minutes": minutes, "frames": frames, "bytes": video.stat().st_size,
                            **measure(video, args, checkpoint, warmup)}
            video.unlink()
    short, long = result["short"], result["long"]
    for row in (short, long):
        row["growth_mib"] = round(row["peak_rss_mib"] - row["baseline_rss_mib"], 1)
    result["length_ratio"] = round(long["frames"] / short["frames"], 3)
    result["peak_rss_ratio"] = round(long["peak_rss_mib"] / short["peak_rss_mib"], 3)
    if args.json:
        print(json.dumps(result))
        return
    for name in ("short", "long"):
        row = result[name]
        print(f"{name}: {row['minutes']:g} min, {row['frames']} frames ({row['decoded']} decoded), "
              f"{row['windows']} windows: peak RSS {row['peak_rss_mib']:.0f} MiB "
              f"(+{row['growth_mib']:.0f} MiB over the warmed-up model)")
    print(f"peak RSS ratio long/short: {result['peak_rss_ratio']:.3f} for {result['length_ratio']:g}x the length")


if __name__ == "__main__":
    main()
