"""VideoDataset and its loader: items, batches, broken videos skipped and counted, strict, determinism, resume."""

import pytest
import torch
from videos import frame_index, write_dataset, write_empty, write_text_as_video, write_truncated, write_video

from mbgf_cli.data import ResumableSampler, VideoDataset, build_loader
from mbgf_cli.data.transforms import CLIP_MEAN, CLIP_STD
from mbgf_cli.errors import UserError


def grey_level(x: torch.Tensor) -> float:
    """Undo CLIP normalisation of a [3, H, W] frame and return its mean level in 0..255."""
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return float(((x * std + mean) * 255).mean())


@pytest.fixture
def dataset_root(tmp_path):
    return write_dataset(tmp_path / "ds", num_classes=2, videos_per_class=3, num_frames=16)


@pytest.fixture
def broken_root(tmp_path):
    """Four good videos and, listed among them, every kind of broken one."""
    root = tmp_path / "broken"
    for i in range(4):
        write_video(root / "videos" / f"good{i}.mp4", num_frames=8)
    write_truncated(root / "videos" / "cut.mp4")
    write_empty(root / "videos" / "empty.mp4")
    write_text_as_video(root / "videos" / "page.mp4")
    lines = ["good0.mp4 0", "cut.mp4 1", "good1.mp4 0", "empty.mp4 1", "good2.mp4 0", "page.mp4 1", "gone.mp4 1", "good3.mp4 0"]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_train_item_shape_label_index(dataset_root):
    ds = VideoDataset(dataset_root, "train.txt", 2, frames=4, input_size=32, train=True)
    assert len(ds) == 4
    clip, label, index = ds[3]
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.float32
    assert (label, index) == (1, 3)


def test_test_item_views_and_batch_layout(dataset_root):
    ds = VideoDataset(dataset_root, "val.txt", 2, frames=4, input_size=32, train=False, views=(2, 3))
    views, label, index = ds[1]
    assert views.shape == (6, 4, 3, 32, 32) and (label, index) == (1, 1)
    # View v = clip * crops + crop; the temporal clips sample different frames, the crops the same ones.
    level = [[frame_index_of(views[v, t]) for t in range(4)] for v in range(6)]
    assert level[0] == level[1] == level[2] and level[3] == level[4] == level[5] and level[0] != level[3]
    assert level[0] == [1, 5, 9, 13] and level[3] == [3, 7, 11, 15]  # 2 clips of 4 segments of 4 frames
    loader = build_loader(ds, batch_size=2, workers=0, shuffle=False, drop_last=False, distributed=False, seed=0)
    clips, labels, indices = next(iter(loader))
    assert clips.shape == (2, 6, 4, 3, 32, 32) and labels.tolist() == [0, 1] and indices.tolist() == [0, 1]


def frame_index_of(x):
    # Test videos are grey levels per frame index (write_dataset tints the red channel; use green).
    mean, std = CLIP_MEAN[1], CLIP_STD[1]
    level = float(((x[1] * std + mean) * 255).mean())
    return frame_index(torch.full((1, 1, 3), level).numpy(), 16)


def test_train_clip_frames_come_from_each_segment_in_order(dataset_root):
    ds = VideoDataset(dataset_root, "train.txt", 2, frames=4, input_size=32, train=True, jitter=0, gray=0, flip=False)
    for epoch in range(3):
        ds.set_epoch(epoch)
        frames = [frame_index_of(f) for f in ds[0][0]]
        assert [f // 4 for f in frames] == [0, 1, 2, 3], frames


def test_broken_and_missing_videos_are_skipped_counted_and_listed(broken_root, tmp_path, capsys):
    ds = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True)
    err = capsys.readouterr().err
    assert "train.txt:7: gone.mp4" in err  # the missing video is reported when the dataset is built
    items = [ds[i] for i in range(len(ds))]
    good = {0, 2, 4, 7}
    for requested, (clip, label, index) in enumerate(items):
        assert clip.shape == (4, 3, 32, 32)
        assert index in good and label == 0  # every item is a readable video, its own label
        if requested in good:
            assert index == requested
    failures = dict(ds.failures())
    assert sorted(failures) == ["cut.mp4", "empty.mp4", "gone.mp4", "page.mp4"]
    assert failures["empty.mp4"].startswith("empty file") and failures["gone.mp4"] == "missing"
    err = capsys.readouterr().err
    for name in ("cut.mp4", "empty.mp4", "page.mp4"):
        assert err.count(f"skipping {broken_root / 'videos'}/{name}") == 1
    line = ds.skipped_summary(tmp_path / "run" / "skipped.txt")
    assert line == f"4 videos skipped, list written to {tmp_path / 'run' / 'skipped.txt'}"
    assert len((tmp_path / "run" / "skipped.txt").read_text().splitlines()) == 4
    # A second pass logs nothing new: each failure is logged once.
    for i in range(len(ds)):
        ds[i]
    assert "skipping" not in capsys.readouterr().err


def test_replacements_are_deterministic(broken_root):
    a = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, seed=1)
    b = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, seed=1)
    for i in (1, 3, 5, 6):
        ia, ib = a[(i, 2)], b[(i, 2)]
        assert ia[2] == ib[2] and torch.equal(ia[0], ib[0])


def test_strict_fails_at_the_first_broken_video_naming_file_and_line(broken_root):
    with pytest.raises(UserError) as e:
        VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, strict=True)
    assert "train.txt:7: gone.mp4" in str(e.value)  # missing files: all reported together
    (broken_root / "train.txt").write_text("good0.mp4 0\ncut.mp4 1\n")
    ds = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, strict=True)
    ds[0]
    with pytest.raises(UserError) as e:
        ds[1]
    assert f"{broken_root / 'train.txt'}:2: cannot read video cut.mp4: cannot open" in str(e.value)


def test_strict_error_from_a_worker_is_one_clean_line(broken_root):
    (broken_root / "train.txt").write_text("good0.mp4 0\npage.mp4 1\n")
    ds = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, strict=True)
    loader = build_loader(ds, batch_size=2, workers=1, shuffle=False, drop_last=False, distributed=False, seed=0)
    with pytest.raises(UserError) as e:
        list(loader)
    assert str(e.value).startswith(f"{broken_root / 'train.txt'}:2: cannot read video page.mp4")
    assert "Traceback" not in str(e.value)


def test_missing_videos_all_reported_and_all_missing_is_an_error(tmp_path):
    root = tmp_path / "r"
    write_video(root / "videos" / "a.mp4")
    (root / "train.txt").write_text("x1.mp4 0\nx2.mp4 0\n")
    with pytest.raises(UserError) as e:
        VideoDataset(root, "train.txt", 1, frames=2, input_size=32)
    assert "2 listed video(s) not found" in str(e.value)
    assert "train.txt:1: x1.mp4" in str(e.value) and "train.txt:2: x2.mp4" in str(e.value)


def test_workers_and_failures_in_workers(broken_root, tmp_path):
    ds = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, seed=0)
    plain = [ds[(i, 0)] for i in range(len(ds))]
    fresh = VideoDataset(broken_root, "train.txt", 2, frames=4, input_size=32, train=True, seed=0,
                         failures_dir=tmp_path / "fails")
    loader = build_loader(fresh, batch_size=3, workers=2, shuffle=False, drop_last=False, distributed=False, seed=0)
    loader.set_epoch(0)
    got = [b for b in loader]
    clips = torch.cat([b[0] for b in got])
    indices = torch.cat([b[2] for b in got]).tolist()
    # Two workers give exactly the clips of the main process, replacements included ...
    assert indices == [p[2] for p in plain]
    assert torch.equal(clips, torch.stack([p[0] for p in plain]))
    # ... and the main process sees the failures met in the workers.
    assert sorted(p for p, _ in fresh.failures()) == ["cut.mp4", "empty.mp4", "gone.mp4", "page.mp4"]


def test_epochs_change_the_clips_and_persistent_workers_follow(dataset_root):
    ds = VideoDataset(dataset_root, "train.txt", 2, frames=4, input_size=32, train=True, seed=0)
    loader = build_loader(ds, batch_size=4, workers=1, shuffle=False, drop_last=False, distributed=False, seed=0)
    batches = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        batches.append(next(iter(loader))[0])
    assert torch.equal(batches[0], batches[2]) and not torch.equal(batches[0], batches[1])
    assert torch.equal(batches[1], torch.stack([ds[(i, 1)][0] for i in range(4)]))


def test_resume_within_an_epoch_yields_the_remaining_batches(dataset_root):
    ds = VideoDataset(dataset_root, "train.txt", 2, frames=2, input_size=32, train=True, seed=5)
    loader = build_loader(ds, batch_size=1, workers=0, shuffle=True, drop_last=False, distributed=False, seed=9)
    loader.set_epoch(3)
    full = list(loader)
    assert len(full) == 4
    resumed = build_loader(ds, batch_size=1, workers=0, shuffle=True, drop_last=False, distributed=False, seed=9,
                           epoch=3, start_batch=2)
    assert len(resumed) == 2
    rest = list(resumed)
    assert [b[2].tolist() for b in rest] == [b[2].tolist() for b in full[2:]]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, full[2:], strict=True))


def test_sampler_shards_ranks_disjointly_and_skips_per_rank():
    data = list(range(10))
    ranks = [ResumableSampler(data, batch_size=2, num_replicas=2, rank=r, shuffle=True, seed=1) for r in range(2)]
    for s in ranks:
        s.set_epoch(4)
    orders = [[i for i, e in s] for s in ranks]
    assert all(e == 4 for s in ranks for _, e in s)
    assert sorted(orders[0] + orders[1]) == data and not set(orders[0]) & set(orders[1])
    ranks[1].set_epoch(4, start_batch=1)
    assert [i for i, _ in ranks[1]] == orders[1][2:] and len(ranks[1]) == 3
    ranks[1].set_epoch(5)
    assert [i for i, _ in ranks[1]] != orders[1]


def test_distributed_needs_a_process_group(dataset_root):
    ds = VideoDataset(dataset_root, "train.txt", 2, frames=2, input_size=32)
    with pytest.raises(UserError, match="process group"):
        build_loader(ds, batch_size=2, workers=0, shuffle=True, drop_last=False, distributed=True, seed=0)


def test_pyav_decoder_equals_decord(dataset_root):
    a = VideoDataset(dataset_root, "val.txt", 2, frames=4, input_size=32, train=False, decoder="pyav")
    b = VideoDataset(dataset_root, "val.txt", 2, frames=4, input_size=32, train=False, decoder="decord")
    va, vb = a[0][0], b[0][0]
    assert [frame_index_of(f) for f in va[0]] == [2, 6, 10, 14]  # the centres of 4 segments of 16 frames
    assert torch.allclose(va, vb, atol=0.05)
    with pytest.raises(UserError, match="decoder"):
        VideoDataset(dataset_root, "val.txt", 2, decoder="ffmpeg")


def test_list_file_is_found_in_the_root_and_item_seed_is_a_pure_function(dataset_root):
    ds = VideoDataset(dataset_root, dataset_root / "train.txt", 2, frames=2, input_size=32, seed=4)
    ds2 = VideoDataset(dataset_root, "train.txt", 2, frames=2, input_size=32, seed=4)
    ds2.set_epoch(7)
    assert torch.equal(ds[(2, 7)][0], ds2[2][0])
    assert not torch.equal(ds[(2, 7)][0], VideoDataset(dataset_root, "train.txt", 2, frames=2, input_size=32, seed=5)[(2, 7)][0])
    assert grey_level(ds[(0, 0)][0][0]) > 0


@pytest.mark.parametrize("train", [True, False])
def test_normalisation_follows_the_given_mean_and_std(dataset_root, train):
    """A model trained with other statistics (X-CLIP: ImageNet's) gets its own normalisation."""
    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    options = dict(frames=4, input_size=32, train=train, jitter=0.0, gray=0.0, flip=False, crop="center")
    clip_normalised = VideoDataset(dataset_root, "train.txt", 2, **options)[2][0]
    imagenet_normalised = VideoDataset(dataset_root, "train.txt", 2, mean=imagenet_mean, std=imagenet_std,
                                       **options)[2][0]
    shape = (3, 1, 1)
    pixels = clip_normalised * torch.tensor(CLIP_STD).view(shape) + torch.tensor(CLIP_MEAN).view(shape)
    expected = (pixels - torch.tensor(imagenet_mean).view(shape)) / torch.tensor(imagenet_std).view(shape)
    assert torch.allclose(imagenet_normalised, expected, atol=1e-4)
    assert not torch.allclose(imagenet_normalised, clip_normalised, atol=1e-2)
