"""Losses over class logits and video/text features.

- :func:`cross_entropy`: hard labels with label smoothing (0.1 by default), or soft targets (mixup/cutmix);
- :func:`soft_target_cross_entropy`: ``-sum(target * log_softmax(logits))``, mean over the batch;
- :func:`actionclip_kl_loss`: ActionCLIP's symmetric KL loss on the in-batch video-text logits
  against the same-class matrix; :func:`actionclip_loss` builds those logits from a forward pass's
  details (``model(clips, tokens, return_details=True)``).
"""

import torch
import torch.nn.functional as F

# ActionCLIP sharpens the 0/1 same-class matrix into a target distribution with softmax(10 * gt):
# near-uniform over the videos of the same class.
ACTIONCLIP_TARGET_SHARPNESS = 10.0


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution per row (mixup/cutmix targets), batch mean."""
    return -(target * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Class labels ``[B]`` (with label smoothing) or soft targets ``[B, K]`` (used as they are: mixup
    and cutmix targets carry their own smoothing)."""
    if target.dim() == logits.dim():
        return soft_target_cross_entropy(logits, target)
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def same_class_matrix(labels: torch.Tensor) -> torch.Tensor:
    """``[B, B]``: 1 where videos i and j have the same label."""
    return (labels[:, None] == labels[None, :]).float()


def in_batch_logits(video_features: torch.Tensor, text_features: torch.Tensor,
                    logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``[B, B]`` logits of every video against every video's class text (``[B, E]`` each)."""
    video, text = F.normalize(video_features.float(), dim=-1), F.normalize(text_features.float(), dim=-1)
    return logit_scale * video @ text.t()


def label_text_features(text_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each video's own class text ``[B, E]`` from class texts ``[K, E]`` or per-video ``[B, K, E]``."""
    if text_features.dim() == 2:
        return text_features[labels]
    if text_features.dim() == 3:
        return text_features[torch.arange(labels.shape[0], device=labels.device), labels]
    raise ValueError(f"text features of shape {tuple(text_features.shape)}: expected [K, E] or [B, K, E]")


def actionclip_kl_loss(logits_per_video: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ActionCLIP's loss: the mean of KL(target || softmax(logits)) video-to-text (rows) and
    text-to-video (columns), target = softmax(10 * same_class_matrix), summed per row and averaged
    over the batch."""
    target = (ACTIONCLIP_TARGET_SHARPNESS * same_class_matrix(labels)).softmax(dim=1)
    logits_per_video = logits_per_video.float()

    def kl(logits):
        return F.kl_div(logits.log_softmax(dim=1), target, reduction="batchmean")

    return (kl(logits_per_video) + kl(logits_per_video.t())) / 2


def actionclip_loss(details: dict, labels: torch.Tensor) -> torch.Tensor:
    """:func:`actionclip_kl_loss` from a forward pass's details (video features, the text features the
    logits used (one template per video in training), the logit scale)."""
    text = label_text_features(details["text_features"], labels)
    return actionclip_kl_loss(in_batch_logits(details["video_features"], text, details["logit_scale"]), labels)
