"""fusion.losses, fusion.mixup and fusion.prompts against known answers."""

import math
import random

import pytest
import torch

import fusion
from fusion import losses, prompts
from fusion.mixup import mixup_cutmix, one_hot


def test_cross_entropy_with_label_smoothing():
    logits, target = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    log_z = math.log(math.exp(2.0) + 2.0)
    log_p = [2.0 - log_z, -log_z, -log_z]
    expected = -((0.9 + 0.1 / 3) * log_p[0] + 0.1 / 3 * (log_p[1] + log_p[2]))  # default smoothing 0.1
    assert losses.cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert losses.cross_entropy(logits, target, label_smoothing=0.0).item() == pytest.approx(-log_p[0], rel=1e-6)


def test_soft_target_cross_entropy():
    # Uniform logits: log K whatever the target.
    target = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 0.5, 0.5]])
    assert losses.soft_target_cross_entropy(torch.zeros(2, 4), target).item() == pytest.approx(math.log(4))
    # A one-hot target is plain cross-entropy; cross_entropy routes [B, K] targets here.
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    hard = torch.nn.functional.cross_entropy(logits, torch.tensor([1])).item()
    assert losses.cross_entropy(logits, torch.tensor([[0.0, 1.0, 0.0]])).item() == pytest.approx(hard, rel=1e-6)


def test_actionclip_kl_loss_known_answers():
    labels = torch.tensor([0, 0, 1])
    same = losses.same_class_matrix(labels)
    assert same.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    # Logits equal to the target's own log-odds (10 x same-class): zero divergence both ways.
    assert losses.actionclip_kl_loss(10.0 * same, labels).item() == pytest.approx(0.0, abs=1e-6)

    # Uniform logits: per row KL(target || uniform) = log 3 - H(target), both directions alike.
    def row_kl(row):
        weights = [math.exp(10.0 * v) for v in row]
        target = [w / sum(weights) for w in weights]
        return sum(t * math.log(t / (1 / 3)) for t in target)

    expected = sum(row_kl(row) for row in same.tolist()) / 3
    assert losses.actionclip_kl_loss(torch.zeros(3, 3), labels).item() == pytest.approx(expected, rel=1e-5)

    # Not symmetric logits: the text-to-video direction reads the columns.
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = (10.0 * same).softmax(1)

    def kl(lg):
        return sum(float((target[i] * (target[i].log() - lg[i].log_softmax(0))).sum()) for i in range(3)) / 3

    assert losses.actionclip_kl_loss(logits, labels).item() == pytest.approx((kl(logits) + kl(logits.t())) / 2, rel=1e-5)


def test_actionclip_loss_from_forward_details():
    torch.manual_seed(0)
    model = fusion.build_video_model("tiny", "actionclip", mbgf=False, frames=2, input_size=32).train()
    tokens = torch.zeros(4, 3, 77, dtype=torch.long)  # [K, P, 77]
    tokens[..., 0], tokens[..., 1:3], tokens[..., 3] = 49406, torch.randint(1, 49000, (4, 3, 2)), 49407
    labels = torch.tensor([0, 2, 2, 3])
    logits, details = model(torch.randn(4, 2, 3, 32, 32), tokens, return_details=True)
    loss = losses.actionclip_loss(details, labels)
    # By hand: each video's own class text (its drawn template), in-batch cosine logits.
    text = details["text_features"][torch.arange(4), labels]
    video = torch.nn.functional.normalize(details["video_features"], dim=-1)
    in_batch = model.logit_scale.exp() * video @ torch.nn.functional.normalize(text, dim=-1).t()
    torch.testing.assert_close(loss, losses.actionclip_kl_loss(in_batch, labels))
    # The per-class logits of the same forward pass agree with those features.
    torch.testing.assert_close(in_batch.diagonal(), logits[torch.arange(4), labels])
    loss.backward()
    assert model.fusion_model.frame_position_embeddings.weight.grad is not None


def test_one_hot_smoothing():
    target = one_hot(torch.tensor([1, 0]), 4, smoothing=0.1)
    torch.testing.assert_close(target, torch.tensor([[0.025, 0.925, 0.025, 0.025], [0.925, 0.025, 0.025, 0.025]]))


def test_mixup_mixes_clips_and_targets_alike():
    clips, labels = torch.rand(4, 3, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, targets = mixup_cutmix(clips, labels, 5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0,
                                  rng=random.Random(0))
    lam = targets[0, 0].item()  # video 0 (label 0) mixed with video 3 (label 3)
    assert 0 < lam < 1 and targets[0, 3].item() == pytest.approx(1 - lam)
    torch.testing.assert_close(mixed, lam * clips + (1 - lam) * clips.flip(0))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))


def test_cutmix_pastes_one_box_in_every_frame():
    clips, labels = torch.rand(4, 5, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    original = clips.clone()
    mixed, targets = mixup_cutmix(clips, labels, 4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0,
                                  rng=random.Random(3))
    torch.testing.assert_close(clips, original)  # the input is left alone
    from_partner = (mixed == clips.flip(0)) & (mixed != clips)  # [B, T, 3, H, W]
    box = from_partner[0, 0, 0]
    assert box.any(), "a box was pasted (seeded)"
    assert (from_partner[:, :, :] == box).all(), "the same box in every video, frame and channel"
    rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
    assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all(), "a rectangle"
    pasted = box.float().mean().item()
    assert targets[0, 0].item() == pytest.approx(1 - pasted) and targets[0, 3].item() == pytest.approx(pasted)


def test_mixup_off_returns_smoothed_one_hot():
    clips = torch.rand(2, 1, 3, 4, 4)
    mixed, targets = mixup_cutmix(clips, torch.tensor([1, 0]), 2, mixup_alpha=0.0, cutmix_alpha=0.0,
                                  label_smoothing=0.2)
    assert mixed is clips
    torch.testing.assert_close(targets, torch.tensor([[0.1, 0.9], [0.9, 0.1]]))


def test_prompt_templates_and_tokens():
    assert len(prompts.TEMPLATES) >= 8 and len(set(prompts.TEMPLATES)) == len(prompts.TEMPLATES)
    assert all(template.count("{}") == 1 for template in prompts.TEMPLATES)
    tokens = prompts.class_tokens(["abseiling", "air_drumming", "moving something left to right"])
    assert tokens.shape == (3, len(prompts.TEMPLATES), 77) and tokens.dtype == torch.long
    # docs/DESIGN.md's reference: "a photo of abseiling" is 49406, 320, 1125, 539, 596, 567, 3299, 49407.
    bare = prompts.class_tokens(["abseiling"], templates=("{}",))
    assert bare[0, 0, :5].tolist() == [49406, 596, 567, 3299, 49407] and bare[0, 0, 5:].eq(0).all()
    assert prompts.class_prompts(["air_drumming"], templates=("a video of {}.",)) == [["a video of air drumming."]]
    # Every prompt ends with end-of-text, the largest id, where CLIP reads the text embedding.
    assert (tokens.gather(2, tokens.argmax(2, keepdim=True)) == 49407).all()
