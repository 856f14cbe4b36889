"""MBGF learns what mean pooling cannot: the direction of motion.

Each clip is paired with its time reversal, labelled with the opposite direction (a bright square
moving left to right vs right to left), so no frame-order-invariant model can beat 50%. The CLIP
weights stay frozen (random init; features precomputed once), and MBGF trains for a few steps.
"""

import pytest
import torch
import torch.nn.functional as F

import fusion

T, SIZE, SQUARE, STEP = 4, 48, 12, 8


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def moving_squares(pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[2*pairs, T, 3, SIZE, SIZE]`` clips in [-1, 1] and labels (1: left to right, 0: right to left)."""
    g = torch.Generator().manual_seed(seed)
    forward = torch.full((pairs, T, 3, SIZE, SIZE), -1.0)
    for i in range(pairs):
        y = int(torch.randint(0, SIZE - SQUARE + 1, (1,), generator=g))
        x0 = int(torch.randint(0, SIZE - SQUARE - STEP * (T - 1) + 1, (1,), generator=g))
        for t in range(T):
            x = x0 + STEP * t
            forward[i, t, :, y:y + SQUARE, x:x + SQUARE] = 1.0
    clips = torch.cat([forward, forward.flip(1)])
    labels = torch.cat([torch.ones(pairs, dtype=torch.long), torch.zeros(pairs, dtype=torch.long)])
    return clips, labels


def test_mbgf_learns_motion_direction_that_mean_pooling_cannot():
    torch.manual_seed(0)
    clips, labels = moving_squares(pairs=32)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, 0], tokens[0, 1], tokens[1, 1], tokens[:, 2] = 49406, 320, 321, 49407

    # Mean pooling: a clip and its reversal get the same logits, so exactly one of each pair is right.
    baseline = fusion.build_video_model("tiny", "clip", mbgf=False, frames=T, input_size=SIZE)
    with torch.no_grad():
        logits = baseline(clips, tokens)
    torch.testing.assert_close(logits[:32], logits[32:])

    model = fusion.build_video_model("tiny", "clip", mbgf=True, frames=T, input_size=SIZE)
    model.load_state_dict(baseline.state_dict(), strict=False)  # the same CLIP
    with torch.no_grad():
        frames, patches = model.encode_frames(clips)
        text = F.normalize(model.encode_text(tokens), dim=-1)
        scale = model.logit_scale.exp()
        torch.testing.assert_close(model(clips, tokens), logits)  # MBGF at init: the baseline

    def mbgf_logits(index):
        video, _ = model.mbgf(frames[index].mean(1), frames[index], patches[index])
        return scale * F.normalize(video, dim=-1) @ text.t()

    optimizer = torch.optim.AdamW(model.mbgf.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    order = torch.Generator().manual_seed(1)
    for _ in range(50):
        index = torch.randperm(64, generator=order)[:16]
        loss = F.cross_entropy(mbgf_logits(index), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    with torch.no_grad():
        logits, details = model(clips, tokens, return_details=True)
    assert (logits[:32] - logits[32:]).abs().max() > 0.1, "MBGF tells a clip from its reversal"
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.8, accuracy
    torch.testing.assert_close(details["gates"].sum(dim=1), torch.ones(64))


def test_spatial_moment_weights_known_answer():
    from fusion.mbgf import SPATIAL_MOMENTS, spatial_moment_weights

    weights = spatial_moment_weights(2, 2)  # patches in row-major order: (y, x) = (-1,-1), (-1,1), (1,-1), (1,1)
    assert weights.shape == (4, len(SPATIAL_MOMENTS))
    assert weights.T.tolist() == [[1, 1, 1, 1], [-1, 1, -1, 1], [-1, -1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0],
                                  [1, -1, -1, 1]]
    weights = spatial_moment_weights(3, 3)
    assert torch.allclose(weights[:, 3:5].sum(dim=0), torch.zeros(2), atol=1e-6)  # centred second moments
    assert weights[4, [1, 2, 5]].abs().sum() == 0  # the centre patch has x = y = 0


def test_motion_branch_sees_where_the_change_happens():
    """The same change at the left or the right of the grid gives different motion features."""
    from fusion.mbgf import MotionBranch

    torch.manual_seed(0)
    branch = MotionBranch(width=16, embed_dim=8)
    tokens = torch.randn(16).expand(1, 2, 9, 16).clone()  # a still scene: every patch alike, in both frames
    change = torch.randn(16)
    left, right = tokens.clone(), tokens.clone()
    left[0, 1, 3] = change   # patch (row 1, column 0) changes between the two frames
    right[0, 1, 5] = change  # patch (row 1, column 2): the mirror image
    with torch.no_grad():
        assert torch.allclose(branch(tokens), branch(tokens.flip(3)))  # nothing moves: no difference
        assert not torch.allclose(branch(left), branch(right), atol=1e-4)
