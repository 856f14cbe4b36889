"""Frame sampling: TSN train (in segment), test (centre), multi-view (fixed, evenly spaced), short videos."""

import math

import pytest
import torch

from mbgf_cli.data.sampling import FrameSampler, spread, tsn_train, tsn_view


def test_train_takes_one_frame_inside_each_segment():
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        idx = tsn_train(100, 8, g)
        assert len(idx) == 8
        for i, t in enumerate(idx):
            # Segment i spans [12.5 i, 12.5 (i+1)); a frame belongs to it if the two overlap.
            assert math.floor(100 * i / 8) <= t < math.ceil(100 * (i + 1) / 8), (seed, i, t)


def test_train_offsets_vary_and_follow_the_generator():
    draws = {tuple(tsn_train(64, 4, torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(draws) > 10
    a = tsn_train(64, 4, torch.Generator().manual_seed(7))
    assert a == tsn_train(64, 4, torch.Generator().manual_seed(7))


def test_test_takes_segment_centres():
    assert tsn_view(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert tsn_view(16, 4) == [2, 6, 10, 14]


def test_multi_view_offsets_are_evenly_spaced_and_deterministic():
    # 4 clips over segments of 10 frames: offsets 1.25, 3.75, 6.25, 8.75 -> frames 1, 3, 6, 8 of each segment.
    views = FrameSampler(8).views(80, 4)
    assert views == FrameSampler(8).views(80, 4)
    assert [v[0] for v in views] == [1, 3, 6, 8]
    assert [v[1] for v in views] == [11, 13, 16, 18]
    assert FrameSampler(8).views(80, 1) == [tsn_view(80, 8)]


def test_short_videos_repeat_frames_in_order():
    assert spread(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]
    g = torch.Generator().manual_seed(0)
    assert tsn_train(3, 8, g) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert tsn_view(1, 4) == [0, 0, 0, 0]
    for k in range(3):
        assert tsn_view(5, 8, k, 3) == sorted(tsn_view(5, 8, k, 3))


def test_exactly_t_frames_gives_every_frame():
    assert tsn_view(8, 8) == list(range(8))
    assert tsn_train(8, 8, torch.Generator().manual_seed(3)) == list(range(8))


def test_sampler_validates():
    with pytest.raises(ValueError):
        FrameSampler(0)
