"""Mixup and cutmix on clips ``[B, T, 3, H, W]``: each video mixed with the batch's reversed order
(video i with video B-1-i), one mixing weight per batch, the cutmix box the same in every frame (so the
pasted region moves as its own video does). Targets are the correspondingly mixed (smoothed) one-hot
rows, for :func:`fusion.losses.soft_target_cross_entropy`.
"""

import math
import random

import torch


def one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``[B, K]`` rows: ``1 - smoothing + smoothing/K`` at the label, ``smoothing/K`` elsewhere."""
    off = smoothing / num_classes
    target = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return target.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float, rng: random.Random) -> tuple[int, int, int, int]:
    """A box covering about ``1 - lam`` of the frame, centred uniformly, clipped to the frame:
    ``(top, bottom, left, right)``."""
    ratio = math.sqrt(1.0 - lam)
    box_h, box_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    return top, bottom, left, right


def mixup_cutmix(clips: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, switch_prob: float = 0.5, label_smoothing: float = 0.1,
                 rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (cutmix with probability ``switch_prob`` when both alphas are on; an alpha of 0
    turns that one off) -> ``(mixed clips, soft targets [B, K])``; the input is not modified."""
    rng = rng or random
    targets = one_hot(labels, num_classes, label_smoothing)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return clips, targets
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = rng.betavariate(alpha, alpha)
    partner = clips.flip(0)
    if use_cutmix:
        height, width = clips.shape[-2:]
        top, bottom, left, right = cutmix_box(height, width, lam, rng)
        mixed = clips.clone()
        mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # the area actually pasted
    else:
        mixed = clips * lam + partner * (1.0 - lam)
    return mixed, targets * lam + targets.flip(0) * (1.0 - lam)
