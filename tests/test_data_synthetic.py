"""The synthetic motion dataset: class sets, seed layout, determinism, idempotence, and the motions themselves."""

import json

import numpy as np
import pytest

from mbgf_cli.data import VideoDataset, read_labels, read_video_list
from mbgf_cli.data import synthetic as syn
from mbgf_cli.data.readers import open_video
from mbgf_cli.errors import UserError

# 64 px: x264 is not deterministic on frames of 32 px, and decord 0.6 misreads some widths (48, 72).
TINY = dict(videos_per_class=2, frames=8, size=64, val_fraction=0.5, workers=1, show_progress=False)


def test_class_sets_are_disjoint_named_pairs_of_at_least_ten():
    a, b = syn.class_names("a"), syn.class_names("b")
    assert len(a) >= 10 and len(b) >= 10 and not set(a) & set(b)
    assert len(set(a)) == len(a) and len(set(b)) == len(b)
    assert a[:2] == ["moving something from left to right", "moving something from right to left"]
    assert "something turning from red to blue" in b and "two things merging" in b
    with pytest.raises(UserError):
        syn.class_names("c")


def test_generate_writes_the_seed_layout(tmp_path):
    summary = syn.generate(tmp_path / "d", **TINY)
    root = tmp_path / "d"
    names = read_labels(root / "labels.csv")
    assert names == syn.class_names("a")
    train, val = read_video_list(root / "train.txt", 12), read_video_list(root / "val.txt", 12)
    assert len(train) == len(val) == 12 and summary["generated"] == 24
    assert sorted({label for _, label in train}) == list(range(12))
    for rel, _ in train + val:
        assert (root / "videos" / rel).is_file()
    video = open_video(str(root / "videos" / train[0][0]))
    assert video.num_frames == 8 and video.get([0]).shape == (1, 64, 64, 3)
    # It loads: the dataset the trainer will build on it.
    ds = VideoDataset(root, "train.txt", 12, frames=4, input_size=32, train=True, flip=False)
    assert ds[0][0].shape == (4, 3, 32, 32)


def test_same_seed_same_bytes_other_seed_other_videos(tmp_path):
    syn.generate(tmp_path / "x", seed=3, **TINY)
    syn.generate(tmp_path / "y", seed=3, **{**TINY, "workers": 2})  # process pool or not: same result
    syn.generate(tmp_path / "z", seed=4, **TINY)
    rels = [rel for rel, _ in read_video_list(tmp_path / "x" / "train.txt", 12)]
    for rel in rels:
        assert (tmp_path / "x" / "videos" / rel).read_bytes() == (tmp_path / "y" / "videos" / rel).read_bytes()
    assert (tmp_path / "x" / "train.txt").read_text() == (tmp_path / "z" / "train.txt").read_text()
    assert any((tmp_path / "x" / "videos" / r).read_bytes() != (tmp_path / "z" / "videos" / r).read_bytes() for r in rels)


def test_rerun_is_idempotent_resumes_and_refuses_other_options(tmp_path):
    root = tmp_path / "d"
    syn.generate(root, **TINY)
    victim = root / "videos" / "something_growing" / "0001.mp4"
    content = victim.read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (root / "videos").rglob("*.mp4")}
    victim.unlink()  # as if interrupted before this one
    assert syn.generate(root, **TINY)["generated"] == 1
    assert victim.read_bytes() == content
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != victim)
    assert syn.generate(root, **TINY)["generated"] == 0
    with pytest.raises(UserError, match="other options"):
        syn.generate(root, **{**TINY, "frames": 10})
    assert syn.generate(root, overwrite=True, **{**TINY, "frames": 10})["generated"] == 24
    assert json.loads((root / "synthetic.json").read_text())["frames"] == 10


def test_the_second_class_of_a_pair_is_the_first_played_backwards(monkeypatch, tmp_path):
    written = {}

    def capture(path, frames, fps):
        written[path] = frames.copy()
        open(path, "wb").close()

    monkeypatch.setattr(syn, "encode", capture)
    options = syn.SyntheticOptions(frames=8, size=64)
    for class_index in range(12):
        kind = syn.CLASS_SETS["a"][class_index // 2][2]
        syn.make_video((str(tmp_path / f"{class_index}.mp4"), options, class_index, 5))
        forward = syn.render(kind, syn.video_rng(options, class_index, 5), 8, 64)
        expected = forward[::-1] if class_index % 2 else forward
        assert np.array_equal(written[str(tmp_path / f"{class_index}.mp4")], expected)


def test_encoding_keeps_the_picture(tmp_path):
    frames = syn.render("circle", syn.video_rng(syn.SyntheticOptions(), 0, 0), 8, 64)
    syn.encode(tmp_path / "v.mp4", frames, 16)
    decoded = open_video(str(tmp_path / "v.mp4")).get(range(8)).astype(float)
    assert np.abs(decoded - frames).mean() < 10  # lossy (the per-frame noise goes), but the same picture
    assert abs((decoded - frames).mean()) < 2  # no colour shift: BT.601 limited range, as decoders assume


def track(kind: str, seed: int, frames: int = 16, size: int = 64) -> np.ndarray:
    """Per-frame (x, y, area) of the object(s): the pixels that differ from the same video's background
    (``render`` draws the background first, from the same stream)."""
    options = syn.SyntheticOptions(seed=seed)
    video = syn.render(kind, syn.video_rng(options, 0, seed), frames, size).astype(float)
    background = np.clip(syn._background(syn.video_rng(options, 0, seed), frames, size), 0, 1) * 255
    mask = np.abs(video - background).sum(-1) > 40
    ys, xs = np.mgrid[0:size, 0:size]
    return np.array([(xs[m].mean(), ys[m].mean(), m.sum()) if m.any() else (np.nan, np.nan, 0) for m in mask])


@pytest.mark.parametrize("seed", range(3))
def test_motions_go_where_their_names_say(seed):
    h = track("horizontal", seed)
    assert h[-1, 0] - h[0, 0] > 0.4 * 64  # left to right, across a good part of the frame
    v = track("vertical", seed)
    assert v[0, 1] - v[-1, 1] > 0.4 * 64  # up: rows decrease
    d = track("diagonal", seed)
    assert d[-1, 0] - d[0, 0] > 0.3 * 64 and d[-1, 1] - d[0, 1] > 0.3 * 64  # towards the bottom right
    a = track("antidiagonal", seed)
    assert a[0, 0] - a[-1, 0] > 0.3 * 64 and a[-1, 1] - a[0, 1] > 0.3 * 64  # towards the bottom left
    g = track("grow", seed)
    assert g[-1, 2] > 3 * g[0, 2]
    appear = track("appear", seed)
    assert appear[0, 2] < 0.2 * appear[-1, 2]
    c = track("circle", seed)
    # Clockwise on screen (y down): the cross product of successive offsets from the orbit centre is positive.
    centre = np.nanmean(c[:, :2], axis=0)
    offsets = c[:, :2] - centre
    turns = offsets[:-1, 0] * offsets[1:, 1] - offsets[:-1, 1] * offsets[1:, 0]
    assert np.nansum(turns) > 0


@pytest.mark.parametrize("seed", range(3))
def test_rotation_is_clockwise_on_screen(seed):
    # The object's darker band marks its orientation: the band's offset from the object's centre turns
    # clockwise on screen (y down) when the cross product of successive offsets is positive.
    options = syn.SyntheticOptions(seed=seed)
    video = syn.render("rotate", syn.video_rng(options, 0, seed), 16, 96).astype(float)
    background = np.clip(syn._background(syn.video_rng(options, 0, seed), 16, 96), 0, 1) * 255
    ys, xs = np.mgrid[0:96, 0:96]
    offsets = []
    for frame, bg in zip(video, background, strict=True):
        obj = np.abs(frame - bg).sum(-1) > 40
        luma = frame.mean(-1)
        band = obj & (luma < np.median(luma[obj]) - 15)
        offsets.append((xs[band].mean() - xs[obj].mean(), ys[band].mean() - ys[obj].mean()))
    o = np.array(offsets)
    turns = o[:-1, 0] * o[1:, 1] - o[:-1, 1] * o[1:, 0]
    # Resting frames jitter by a fraction of a pixel either way; the turning frames all go one way.
    assert turns[turns > 0].sum() > 10 * -turns[turns < 0].sum()


def test_objects_are_large_and_stay_in_the_frame():
    for seed in range(6):
        options = syn.SyntheticOptions(seed=seed)
        video = syn.render("horizontal", syn.video_rng(options, 0, seed), 8, 64).astype(float)
        background = np.clip(syn._background(syn.video_rng(options, 0, seed), 8, 64), 0, 1) * 255
        masks = np.abs(video - background).sum(-1) > 40
        for mask in masks:
            ys, xs = np.nonzero(mask)
            extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
            assert extent >= 0.22 * 64  # at least a 16 px ViT patch across at 64 px
        area = masks.sum(axis=(1, 2))
        assert area.min() > 0.8 * area.max()  # never cut by the frame's edge while it travels


def test_generation_options_are_validated(tmp_path):
    with pytest.raises(UserError):
        syn.generate(tmp_path / "d", size=33)
    with pytest.raises(UserError):
        syn.generate(tmp_path / "d", size=32)
    with pytest.raises(UserError):
        syn.generate(tmp_path / "d", val_fraction=1.0)


# The hash of every motion kind's frames (and of where each left its random stream), computed on the
# elif-chain renderer before it became the MOTIONS table: the same bytes, so the cache key and every
# generated dataset stay valid without a version bump.
RENDER_REFERENCE = "54c3d3eb7e67ca84b8b0db6927325d9bc476bdfbcb18bfea0e41b50b4aa469b3"


def test_the_table_driven_renderer_draws_the_same_bytes_as_before():
    import hashlib

    digest = hashlib.sha256()
    for class_set in sorted(syn.CLASS_SETS):
        for _, _, kind in syn.CLASS_SETS[class_set]:
            for seed in range(3):
                rng = np.random.default_rng([seed, 7])
                frames = syn.render(kind, rng, 8, 32)
                digest.update(kind.encode())
                digest.update(frames.tobytes())
                digest.update(rng.bytes(8))
    assert digest.hexdigest() == RENDER_REFERENCE
    assert {kind for pairs in syn.CLASS_SETS.values() for _, _, kind in pairs} == set(syn.MOTIONS)
    with pytest.raises(ValueError, match="unknown motion kind 'wobble'"):
        syn.render("wobble", np.random.default_rng(0), 8, 32)


def test_workers_beyond_the_machine_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match=r"^--workers 1000000: this machine runs at most \d+ loader processes"):
        syn.generate(tmp_path / "d", **{**TINY, "workers": 10**6})
    assert not (tmp_path / "d").exists()
