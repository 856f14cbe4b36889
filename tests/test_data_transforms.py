"""Torch transforms on uint8 clips: shapes, CLIP normalisation known answer, crops, flip, jitter, grayscale."""

import numpy as np
import pytest
import torch

from mbgf_cli.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    TestTransform,
    TrainTransform,
    color_jitter,
    grayscale,
    multiscale_box,
    normalize,
    random_resized_box,
    resize_short_side,
    to_tchw,
    view_boxes,
)


def clip(t=4, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_normalisation_known_answer():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    # Channel c holds value v_c: expected (v_c/255 - mean_c) / std_c.
    expected = [(0 / 255 - CLIP_MEAN[0]) / CLIP_STD[0], (1 - CLIP_MEAN[1]) / CLIP_STD[1], (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2]]
    out = normalize(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-6)
    assert abs(expected[0] - (-1.7923)) < 1e-3  # black in the red channel, as every CLIP port computes it


def test_train_transform_shape_dtype_and_determinism():
    t = TrainTransform(size=32)
    frames = clip()
    a = t(frames, torch.Generator().manual_seed(5))
    b = t(frames, torch.Generator().manual_seed(5))
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, t(frames, torch.Generator().manual_seed(6)))


def test_test_transform_one_and_three_crops():
    frames = clip(h=32, w=64)
    one = TestTransform(size=32, crops=1)(frames)
    three = TestTransform(size=32, crops=3)(frames)
    assert one.shape == (1, 4, 3, 32, 32) and three.shape == (3, 4, 3, 32, 32)
    # Short side already 32: the crops are exact windows of the frame (left, centre, right).
    expected = normalize(to_tchw(frames))
    assert torch.allclose(three[0], expected[..., 0:32], atol=1e-5)
    assert torch.allclose(three[1], expected[..., 16:48], atol=1e-5)
    assert torch.allclose(three[2], expected[..., 32:64], atol=1e-5)
    assert torch.allclose(one[0], three[1])


@pytest.mark.parametrize("crops", [1, 3])
def test_uint8_test_views_normalised_later_are_the_same_numbers(crops):
    # predict's loader sends uint8 views and normalises the batch where the model runs; eval's
    # normalises in the loader: the model must see identical inputs either way.
    frames = clip(h=40, w=72, seed=3)
    kept = TestTransform(size=32, crops=crops, normalized=False)(frames)
    assert kept.dtype == torch.uint8 and kept.shape == (crops, 4, 3, 32, 32) and kept.is_contiguous()
    batch = torch.stack([kept, kept])
    assert torch.equal(normalize(batch)[1], TestTransform(size=32, crops=crops)(frames))


def test_test_boxes_for_portrait_and_256_ratio():
    assert view_boxes(64, 32, 32, crops=3) == [(0, 0, 32, 32), (16, 0, 32, 32), (32, 0, 32, 32)]
    # 256/224: short side 256 then a 224 centre crop = a centre box of 224/256 of the short side.
    assert view_boxes(256, 320, 224, crops=1, resize="256/224") == [(16, 48, 224, 224)]


def test_multiscale_crop_sizes_come_from_the_scales_and_stay_inside():
    sides = {int(100 * s) for s in (1.0, 0.875, 0.75, 0.66)}
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        top, left, h, w = multiscale_box(100, 150, g)
        assert h in sides and w in sides
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 150
        seen.add((h, w))
    assert (100, 100) in seen and (66, 75) in seen and (100, 66) not in seen  # at most one scale apart


def test_random_resized_box_inside_and_area_range():
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        top, left, h, w = random_resized_box(60, 80, g, scale=(0.25, 1.0))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert h * w >= 0.2 * 60 * 80


def test_flip_mirrors_and_can_be_disabled():
    frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    frames[:, :, :8] = 255  # a white band on the left
    seeds_with_flip = []
    for seed in range(20):
        out = TrainTransform(size=32, crop="center", jitter=0, gray=0)(frames, torch.Generator().manual_seed(seed))
        left_is_white = out[0, 0, 0, 0] > 0
        if not left_is_white:
            seeds_with_flip.append(seed)
            assert out[0, 0, 0, -1] > 0  # mirrored: the band is on the right
    assert 0 < len(seeds_with_flip) < 20
    for seed in seeds_with_flip:
        out = TrainTransform(size=32, crop="center", flip=False, jitter=0, gray=0)(frames, torch.Generator().manual_seed(seed))
        assert out[0, 0, 0, 0] > 0


def test_jitter_is_one_set_of_parameters_per_clip():
    frame = np.random.default_rng(1).integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    frames = np.repeat(frame, 4, axis=0)  # four identical frames stay identical after jitter
    t = TrainTransform(size=32, crop="center", flip=False, jitter=1.0, gray=0)
    out = t(frames, torch.Generator().manual_seed(3))
    for i in range(1, 4):
        assert torch.equal(out[0], out[i])
    assert not torch.allclose(out[0], normalize(to_tchw(frame))[0], atol=1e-3)  # and it did change them


def test_jitter_identity_and_brightness():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(color_jitter(x.clone(), 1.0, 1.0, 1.0, 0.0), x)
    assert torch.allclose(color_jitter(x.clone() * 0.5, 1.5, 1.0, 1.0, 0.0), (x * 0.75).clamp(0, 1), atol=1e-6)
    # A full turn of hue is the identity; a grey pixel has no hue to turn.
    assert torch.allclose(color_jitter(x.clone(), 1.0, 1.0, 1.0, 1.0), x, atol=1e-5)
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(color_jitter(grey.clone(), 1.0, 1.0, 1.0, 0.3), grey, atol=1e-5)


def test_grayscale_channels_equal_luma():
    x = torch.rand(2, 3, 4, 4)
    g = grayscale(x)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    assert torch.allclose(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])


def test_resize_short_side_and_bad_input():
    x = to_tchw(clip(h=48, w=64))
    assert resize_short_side(x, 24).shape == (4, 3, 24, 32)
    with pytest.raises(ValueError):
        to_tchw(np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError):
        TrainTransform(crop="bogus")
