"""ANet pre-training on face identities: softmax + similarity loss (paper section 2.2).

The similarity loss needs identities that repeat inside a batch. A row of the dataset is a group
of up to `images_per_identity` images of one identity; the rows are shuffled every epoch (Ray
Data's unseeded `random_shuffle`, on metadata only) and each group is expanded to its images by
the decode task, so consecutive images share an identity: a batch of B images holds about
B / images_per_identity identities, several images each.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from faceattr_ray.errors import DataError
from faceattr_ray.train.common import Batch, Job, Rows
from faceattr_ray.train.losses import similarity_loss, softmax_loss

NO_BOX = (math.nan, math.nan, math.nan, math.nan)


def face_crop(image: np.ndarray, box, cfg: dict, size: int) -> np.ndarray:
    """The face crop ANet trains on: the job's preprocessing frames it (`Preprocess.face_crop`:
    the box enlarged by its face context; no box (NaN) = an aligned crop, taken whole)."""
    from faceattr_ray.train.common import preprocess_of

    return preprocess_of(cfg).face_crop(image, box, size)


def random_patch(crop: np.ndarray, cfg: dict, train: bool, rng: np.random.Generator) -> np.ndarray:
    """One ANet input patch of the face crop: a random grid position and flip when training
    (the multi-view crops), the centre patch otherwise."""
    a = cfg["anet"]
    p, grid, stride = a["patch_size"], a["grid"], a["patch_stride"]
    if train:
        gy, gx = rng.integers(grid, size=2)
    else:
        gy = gx = grid // 2
    patch = crop[gy * stride:gy * stride + p, gx * stride:gx * stride + p]
    if train and rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch)


def window_size(cfg: dict) -> int:
    a = cfg["anet"]
    return a["patch_size"] + (a["grid"] - 1) * a["patch_stride"]


def _identity_table(cfg: dict):
    from faceattr_ray.data.celeba import read_celeba

    data = read_celeba(cfg["data"])
    if data.identity is None:
        raise DataError(f"{cfg['data']}: no identity_CelebA.txt (anet-pretrain needs identities)")
    train = np.ones(len(data.paths), bool) if data.partition is None else data.partition == 0
    return data, train


def rows(cfg: dict, split: str) -> Rows:
    """Training identities only; validation = one held-out image of each identity with >= 3."""
    data, in_train = _identity_table(cfg)
    classes = {int(i): k for k, i in enumerate(cfg["identities"])}
    by_id: dict[int, list[int]] = {}
    for index in np.flatnonzero(in_train):
        ident = int(data.identity[index])
        if ident in classes:
            by_id.setdefault(ident, []).append(int(index))
    boxes = data.bbox if data.bbox is not None else None
    group = cfg.get("images_per_identity", 4)
    out = []
    for ident, indices in sorted(by_id.items()):
        held = indices[-1:] if len(indices) >= 3 else []
        keep = indices[:-1] if held else indices
        chosen = held if split == "val" else keep
        step = 1 if split == "val" else group
        for start in range(0, len(chosen), step):
            part = chosen[start:start + step]
            out.append({
                "paths": [str(data.paths[i]) for i in part],
                "boxes": [list(map(float, boxes[i])) if boxes is not None else list(NO_BOX)
                          for i in part],
                "label": classes[ident],
            })
    return out[:cfg.get("limit")]


def transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    """Expand identity groups to images; decode, cut the face crop, draw a patch."""
    from faceattr_ray.data.decode import load_image

    size = window_size(cfg)
    images, labels = [], []
    for paths, boxes, label in zip(batch["paths"], batch["boxes"], batch["label"], strict=True):
        for path, box in zip(paths, boxes, strict=True):
            crop = face_crop(load_image(str(path)), box, cfg, size)
            images.append(random_patch(crop, cfg, train, rng))
            labels.append(int(label))
    return {"image": np.stack(images), "label": np.asarray(labels, dtype=np.int64)}


class ANetWithHead(nn.Module):
    """ANet's FC features and one head's logits in one forward (DDP syncs only what forward
    computes). `head` is "identity_logits" (pre-training) or "attribute_logits" (fine-tuning)."""

    def __init__(self, net: nn.Module, head: str):
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, x: torch.Tensor):
        features = self.net(x)
        return features, getattr(self.net, self.head)(features)


def build(cfg: dict) -> ANetWithHead:
    from faceattr_ray.models import ANet, ANetConfig

    anet = ANet(ANetConfig.from_dict(cfg["anet"]))
    # The attribute head gets no gradient here; frozen, DDP does not wait for one.
    anet.attribute_head.requires_grad_(False)
    return ANetWithHead(anet, "identity_logits")


def loss(model, batch: dict, cfg: dict):
    features, logits = model(batch["image"])
    ce, stats = softmax_loss(logits, batch["label"])
    return ce + cfg.get("similarity_weight", 0.1) * similarity_loss(features, batch["label"]), stats


JOB = Job(name="anet-pretrain", build=build, rows=rows, transform=transform, loss=loss)


def resolve(cfg: dict) -> dict:
    """Identities with at least `min_images` training images become the softmax classes."""
    data, in_train = _identity_table(cfg)
    ids, counts = np.unique(data.identity[in_train], return_counts=True)
    keep = ids[counts >= cfg.get("min_images", 2)]
    if len(keep) < 2:
        raise DataError(f"{cfg['data']}: fewer than 2 identities with "
                        f"{cfg.get('min_images', 2)}+ training images")
    cfg = dict(cfg, identities=[int(i) for i in keep])
    cfg["anet"] = dict(cfg.get("anet") or {}, num_identities=len(keep))
    return cfg
