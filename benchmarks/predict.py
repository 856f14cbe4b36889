"""How close ``mbgf predict`` gets to decoding alone: videos/s of predict over a folder vs videos/s of
decoding the same videos' frames, measured in one run.

    python benchmarks/predict.py                                  # generated synthetic videos, the default model
    python benchmarks/predict.py --folder my_videos --checkpoint runs/x/best --views 1x3 --json

On the same folder, in one run:
  decode    the frames predict samples from each video (the union of its views' TSN frames), decoded
            by ``read_frames`` (decord, PyAV fallback) in the same number of loader processes, in
            batches of the same size; no transforms, no model. Also in one process, for reference.
  model     the forward passes alone (``score_views`` on batches decoded beforehand), in this process
            with the threads predict gives it: how much CPU the model needs next to the decoders.
  predict   ``Predictor.predict`` on the folder (what ``mbgf predict FOLDER`` runs once the model is
            loaded): decoding, test views, batched forward passes, softmax over classes, mean over views.
  ratio     predict videos/s / decode videos/s with the same workers. The target is >= 0.8 with the
            default workers. On a CPU the model and the decoders share the cores, so the ratio cannot
            exceed about decode cost / (decode cost + model cost) per video once the decoders fill them.

Default videos: the synthetic dataset's kind (64 px, 32 frames, class set a), generated into a temporary
folder. Default model: the synthetic default's architecture (tiny CLIP + MBGF, 8 frames at 48 px),
untrained (speed does not depend on the weights). ``--model b16``: ViT-B/16 CLIP + MBGF at 8 x 224 on
Kinetics-like videos (340x256, 10 s), where the model, not the decoding, is the bottleneck on a CPU.
Each figure is the best of ``--rounds`` rounds, decode and predict measured in turn within a round, so
that other work on the machine slows both alike.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbgf_cli.console import console  # noqa: E402
from mbgf_cli.data import FrameSampler, read_frames  # noqa: E402
from mbgf_cli.inference import FileSource, Predictor, chunks, collect_videos, default_workers, parse_views  # noqa: E402


class DecodeOnly(Dataset):
    """Predict's decoding alone: each video's sampled frames (all views' union), nothing else."""

    def __init__(self, videos, frames: int, clips: int, decoder: str):
        self.videos, self.sampler, self.clips, self.decoder = videos, FrameSampler(frames), clips, decoder
        self.source = FileSource()

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        def pick(n):
            return sorted({i for view in self.sampler.views(n, self.clips) for i in view})

        frames, _ = read_frames(self.source, self.videos[index], pick, self.decoder)
        return frames.shape[0]


def _one_thread(_worker_id):
    torch.set_num_threads(1)  # as predict's loader workers


def decode_rate(videos, frames: int, clips: int, batch_size: int, workers: int, decoder: str) -> float:
    loader = DataLoader(DecodeOnly(videos, frames, clips, decoder), batch_sampler=chunks(range(len(videos)), batch_size),
                        num_workers=workers, collate_fn=list, worker_init_fn=_one_thread if workers else None)
    start = time.perf_counter()
    decoded = sum(len(batch) for batch in loader)
    return decoded / (time.perf_counter() - start)


def model_rate(predictor: Predictor, videos, views, batch_size: int, decoder: str, workers: int) -> float:
    """Videos/s of the forward passes alone, on views decoded beforehand, with the threads predict starts
    with beside ``workers`` decoders (the cores they leave)."""
    from mbgf_cli.heuristics import ThreadShare

    dataset = predictor.files(videos, views, decoder)
    batches = [batch for batch, _, _ in predictor.stream(dataset, chunks(range(len(videos)), batch_size), workers=0)]
    tokens = predictor.class_tokens(predictor.class_names)
    share = ThreadShare(workers) if workers else None
    try:
        predictor.scores(batches[0], tokens)  # warm up
        start = time.perf_counter()
        for batch in batches:
            predictor.scores(batch, tokens)
        return len(videos) / (time.perf_counter() - start)
    finally:
        if share is not None:
            share.restore()


def predict_rate(predictor: Predictor, videos, views, batch_size: int, workers: int, decoder: str) -> float:
    start = time.perf_counter()
    result = predictor.predict(videos, views=views, batch_size=batch_size, workers=workers, decoder=decoder)
    elapsed = time.perf_counter() - start
    if result.skipped:
        raise SystemExit(f"{len(result.skipped)} videos could not be read, e.g. {result.skipped[0]}")
    return len(result.videos) / elapsed


# The two settings of --model: the architecture (untrained: speed does not depend on the weights) and
# the videos it is measured on.
MODELS = {
    "tiny": dict(input_size=48, what="tiny CLIP+MBGF, 8x48 (the synthetic default's, untrained)"),
    "b16": dict(input_size=224, what="ViT-B/16 CLIP+MBGF, 8x224 (untrained)"),
}


def default_model(folder: Path, backbone: str = "tiny") -> Path:
    """CLIP+MBGF on ``backbone`` with 8 frames, untrained, as an mbgf checkpoint with the synthetic classes."""
    import fusion
    from mbgf_cli.checkpoint import save_checkpoint
    from mbgf_cli.data.synthetic import class_names

    torch.manual_seed(0)
    model = fusion.build_video_model(model=backbone, variant="clip", mbgf=True, frames=8,
                                     input_size=MODELS[backbone]["input_size"])
    return save_checkpoint(folder / "checkpoint", model, {"config": model.config.to_dict(),
                                                          "class_names": class_names("a"), "epoch": 0,
                                                          "metrics": {}, "train": {"prompts": "one"}})


def generated_videos(folder: Path, backbone: str, count: int) -> tuple[Path, str]:
    """The videos of the --model setting: the synthetic dataset's kind for tiny, Kinetics-like for b16."""
    if backbone == "b16":
        from loader import kinetics_like

        kinetics_like(folder, count, seconds=10.0, workers=os.cpu_count() or 1)
        return folder / "videos", "Kinetics-like videos (340x256, 10 s at 25 fps)"
    from mbgf_cli.data import synthetic

    synthetic.generate(folder, videos_per_class=max(1, count // 12), frames=32, size=64, workers=1,
                       show_progress=False)
    return folder / "videos", "synthetic videos (64 px, 32 frames)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="videos to run on (default: generated synthetic videos)")
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny",
                        help="tiny: the synthetic default's model on synthetic videos; b16: ViT-B/16 on "
                             "Kinetics-like videos (both untrained)")
    parser.add_argument("--videos", type=int, default=None, help="generated videos (default: 192 tiny, 24 b16)")
    parser.add_argument("--checkpoint", type=Path, help="model (default: --model's, untrained)")
    parser.add_argument("--views", default="1x1", help="CLIPSxCROPS, as mbgf predict --views")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: predict's default)")
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--amp", default="auto", help="as mbgf predict --amp")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the best round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    views = parse_views(args.views)

    with tempfile.TemporaryDirectory(prefix="mbgf-bench-predict-") as tmp:
        if args.folder:
            folder, what = args.folder, str(args.folder)
        else:
            count = args.videos or (24 if args.model == "b16" else 192)
            folder, what = generated_videos(Path(tmp) / "videos", args.model, count)
        checkpoint = args.checkpoint or default_model(Path(tmp), args.model)
        predictor = Predictor.from_checkpoint(checkpoint, amp=args.amp)
        videos = collect_videos([folder]).videos
        workers = default_workers(predictor.device) if args.workers is None else args.workers
        decode_rate(videos[:8], predictor.config.frames, views[0], args.batch_size, 0, args.decoder)  # warm caches
        decode, decode_one, model, predict = 0.0, 0.0, 0.0, 0.0
        for _ in range(args.rounds):
            decode = max(decode, decode_rate(videos, predictor.config.frames, views[0], args.batch_size, workers,
                                             args.decoder))
            decode_one = max(decode_one, decode_rate(videos, predictor.config.frames, views[0], args.batch_size, 0,
                                                     args.decoder))
            model = max(model, model_rate(predictor, videos, views, args.batch_size, args.decoder, workers))
            predict = max(predict, predict_rate(predictor, videos, views, args.batch_size, workers, args.decoder))
        name = predictor.name if args.checkpoint else MODELS[args.model]["what"]
        results = {"videos": len(videos), "what": what, "model": name, "views": args.views,
                   "batch_size": args.batch_size, "workers": workers, "cpus": os.cpu_count(),
                   "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
                   "rounds": args.rounds, "decode_videos_per_s": decode, "decode_one_process_videos_per_s": decode_one,
                   "model_videos_per_s": model, "predict_videos_per_s": predict, "ratio": predict / decode,
                   "ratio_to_one_decoder": predict / decode_one}

    if args.json:
        print(json.dumps(results, indent=1))
        return
    table = Table(title=f"predict: {len(videos)} {what}; {name}, {args.views} views, {workers} workers, "
                        f"{os.cpu_count()} CPUs, load average {results['load_average']:.1f}, best of {args.rounds}",
                  title_justify="left")
    table.add_column("measurement")
    table.add_column("videos/s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("decode only (1 process)", f"{decode_one:.1f}", f"{decode_one / decode:.2f}")
    table.add_row("model only (forward passes)", f"{model:.1f}", f"{model / decode:.2f}")
    table.add_row(f"decode only ({workers} workers)", f"{decode:.1f}", "1.00")
    table.add_row(f"[bold]mbgf predict ({workers} workers)[/bold]", f"[bold]{predict:.1f}", f"[bold]{results['ratio']:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
