"""Losses of the paper's training schedule (sections 2.1, 2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_loss(features: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
    """Mean squared distance ||FC_i - FC_j||^2 over the same-identity pairs i < j of a batch.

    The paper sums over such pairs (section 2.2); we divide by the pair count so the weight
    against the softmax loss does not depend on the batch size. Uses
    sum_{i<j in g} ||f_i - f_j||^2 = n_g * sum_{i in g} ||f_i - mean_g||^2, which is O(N F)
    and has a finite gradient everywhere (a pairwise-distance matrix would not at zero).
    Returns 0 (with a graph) when no identity repeats in the batch.
    """
    features = features.float()
    _, group, counts = torch.unique(identities, return_inverse=True, return_counts=True)
    sums = features.new_zeros(len(counts), features.shape[1]).index_add_(0, group, features)
    means = sums / counts.unsqueeze(1).to(features.dtype)
    spread = ((features - means[group]) ** 2).sum(dim=1)
    per_group = features.new_zeros(len(counts)).index_add_(0, group, spread)
    pair_sum = (per_group * counts.to(features.dtype)).sum()
    pairs = (counts * (counts - 1) // 2).sum()
    return pair_sum / pairs.clamp(min=1).to(features.dtype)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor,
               smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Sigmoid cross-entropy over the known labels only (NaN = not tagged for that image).

    ``smoothing``: each tag's target moves that share towards 1/2 (0 -> s/2, 1 -> 1 - s/2),
    so the loss stops rewarding certainty a few thousand faces cannot back.
    Returns the mean loss over known labels, plus correct/count sums for attribute accuracy
    (tensors: summing them over an epoch does not wait on the GPU every step).
    """
    logits = logits.float()
    known = ~torch.isnan(labels)
    target = torch.where(known, labels, torch.zeros_like(labels))
    soft = target * (1 - smoothing) + smoothing / 2 if smoothing else target
    per_label = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
    count = known.sum()
    loss = (per_label * known).sum() / count.clamp(min=1)
    correct = (((logits > 0).float() == target) & known).sum()
    return loss, {"correct": correct.detach(), "count": count.detach()}


def softmax_loss(logits: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = logits.float()
    loss = F.cross_entropy(logits, classes.long())
    correct = (logits.argmax(dim=1) == classes).sum()
    return loss, {"correct": correct.detach(), "count": len(classes)}
