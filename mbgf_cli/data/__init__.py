"""The data side of mbgf: annotation lists, video sources, decoding, sampling, transforms, loaders.

    from mbgf_cli.data import read_labels, VideoDataset, build_loader

    classes = read_labels("data/ucf101/labels.csv")
    ds = VideoDataset("data/ucf101", "train.txt", len(classes), frames=8, input_size=224, train=True)
    loader = build_loader(ds, batch_size=32, workers=8, shuffle=True, drop_last=True, distributed=False, seed=0)

One module per concern: ``annotations`` (lists, labels), ``sources`` (folder, tar, zip),
``readers`` (decord, PyAV), ``sampling`` (TSN), ``transforms`` (torch, uint8),
``dataset`` (Dataset, sampler, loader), ``synthetic`` (the generated motion dataset),
the engines of ``mbgf prepare-data``: ``official`` (UCF101, HMDB51, a folder per class), ``kinetics``
(Kinetics-400/600 CSVs, Something-Something v2 JSON), ``video_jobs`` (--check, --resize) and
``prepare`` (the output folder, the shared steps). Knows nothing about models.
"""

from mbgf_cli.data.annotations import read_labels, read_video_list, write_labels, write_video_list
from mbgf_cli.data.dataset import ResumableSampler, VideoDataset, VideoLoader, build_loader
from mbgf_cli.data.readers import DECODERS, VideoError, read_frames
from mbgf_cli.data.sampling import FrameSampler
from mbgf_cli.data.sources import open_source
from mbgf_cli.data.transforms import CLIP_MEAN, CLIP_STD, TestTransform, TrainTransform

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DECODERS",
    "FrameSampler",
    "ResumableSampler",
    "TestTransform",
    "TrainTransform",
    "VideoDataset",
    "VideoError",
    "VideoLoader",
    "build_loader",
    "open_source",
    "read_frames",
    "read_labels",
    "read_video_list",
    "write_labels",
    "write_video_list",
]
