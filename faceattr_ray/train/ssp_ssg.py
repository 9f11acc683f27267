"""The SSP+SSG family's two jobs (Kalayeh et al. 2017), on the same step loop as the others.

- ``parsing``: the parsing network alone, per-pixel cross-entropy on (image, part mask) rows of
  any face-parsing root (`data.parsing`: CelebAMask-HQ, Helen/LaPa, generated people).
- ``finetune-ssp-ssg``: the whole network, jointly: attribute tags (sigmoid cross-entropy, NaN =
  untagged) on a CelebA-layout root's face crops, plus, when ``parsing_data`` is given, parsing
  rows mixed into the same epochs (their attribute labels untagged, their masks scored at
  ``parsing_weight``), so the part maps stay parts while the attribute loss also shapes them.
  ``freeze_parsing`` keeps the parsing network as it came instead. With ``wild`` (as ANet's
  job), a share of the aligned attribute rows become faces as a localizer finds them in photos.

Rows share one schema (path, label, box, mask, layout; mask "" = none), so Ray Data carries
them as it carries the others; crops are made by the job's preprocessing (`Preprocess`), the
same framing `Predictor` uses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

from faceattr_ray.train.anet_pretrain import NO_BOX
from faceattr_ray.train.common import Batch, Job, Route, Rows
from faceattr_ray.train.losses import masked_bce

IGNORE = 255  # mask value of pixels (and rows) with no part label
# Loss weight of each part (background, hair, skin, eyes, brows, nose, mouth) unless the config
# sets "part_class_weights". Eyes, brows, nose and mouth are each about 1% of a face crop's
# pixels or less; unweighted, a small network labels them skin (measured: IoU 0 for all four
# after 2 epochs on 1,200 drawn faces, README).
PART_CLASS_WEIGHTS = (1.0, 1.0, 1.0, 8.0, 8.0, 8.0, 8.0)


def net_config(cfg: dict) -> dict:
    return dict(cfg["ssp_ssg"])


def input_size(cfg: dict) -> int:
    return int(cfg["ssp_ssg"]["input_size"])


# --- augmentation shared by both jobs ---------------------------------------------------------


def augment_pair(image: np.ndarray, mask: np.ndarray | None, size: int,
                 rng: np.random.Generator, cfg: dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """A random crop (90-100% of each side, shifted), a flip, colour and blur jitter; the mask
    follows the geometry by nearest neighbour. Left and right parts share labels, so a flip
    needs no relabelling. Why the colour and blur: the parsing supervision here is drawn
    faces, and it must carry over to photos. With cfg["photos"] (a folder of real photos) a
    masked face first gets `data.face_jitter.photo_texture`; with cfg["move"] ({"scale": [lo,
    hi], "shift": share of the side}) it is moved by a random similarity (`move_face`), so the
    parts cannot be learnt as fixed places."""
    from faceattr_ray.data.face_jitter import load_photos, move_face, photo_texture

    cfg = cfg or {}
    if cfg.get("photos") and mask is not None:
        image = photo_texture(image, mask, load_photos(cfg["photos"]), rng)
    if cfg.get("move"):
        lo, hi = cfg["move"].get("scale", (1.0, 1.0))
        shift = float(cfg["move"].get("shift", 0.0)) * image.shape[1]
        image, mask = move_face(image, mask, float(rng.uniform(lo, hi)),
                                *(float(v) for v in rng.uniform(-shift, shift, 2)))
    h, w = image.shape[:2]
    sx, sy = rng.uniform(0.9, 1.0, 2)
    cw, ch = w * sx, h * sy
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    box = (x0, y0, x0 + cw, y0 + ch)
    im = Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    out = np.asarray(im, np.float32)
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
    out = (out - out.mean()) * rng.uniform(0.8, 1.2) + out.mean()
    out = np.clip(out * gain + rng.normal(0, 3, out.shape), 0, 255).astype(np.uint8)
    m = None
    if mask is not None:
        mh, mw = mask.shape
        mbox = (box[0] * mw / w, box[1] * mh / h, box[2] * mw / w, box[3] * mh / h)
        m = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST, box=mbox))
    if rng.random() < 0.5:
        out = out[:, ::-1]
        m = None if m is None else m[:, ::-1]
    return np.ascontiguousarray(out), None if m is None else np.ascontiguousarray(m)


def part_loss(logits: torch.Tensor, masks: torch.Tensor, cfg: dict | None = None
              ) -> tuple[torch.Tensor, dict]:
    """Per-pixel cross-entropy over labelled pixels, each part weighted (`PART_CLASS_WEIGHTS`
    or cfg["part_class_weights"]; 0 with a graph when no pixel is labelled), and the
    correct/count sums of pixel accuracy."""
    masks = masks.long()
    known = masks != IGNORE
    count = known.sum()
    if int(count) == 0:
        return logits.float().sum() * 0.0, {"correct": 0.0, "count": 0.0}
    weights = (cfg or {}).get("part_class_weights") or PART_CLASS_WEIGHTS
    if len(weights) != logits.shape[1]:
        raise ValueError(f"part_class_weights has {len(weights)} values for "
                         f"{logits.shape[1]} parts")
    w = torch.as_tensor(weights, dtype=torch.float32, device=logits.device)
    loss = F.cross_entropy(logits.float(), masks, weight=w, ignore_index=IGNORE)
    correct = ((logits.argmax(dim=1) == masks) & known).sum()
    return loss, {"correct": correct.detach(), "count": count.detach()}


# --- parsing ------------------------------------------------------------------------------------


def parsing_rows(cfg: dict, split: str) -> Rows:
    from faceattr_ray.data.parsing import parsing_rows as read_rows
    from faceattr_ray.errors import DataError

    try:
        return read_rows(cfg["data"], split, cfg.get("limit"))
    except DataError:
        if split == "train":
            raise
        return []  # no val split: train without validation


def _load_mask_row(row: dict) -> tuple[np.ndarray, np.ndarray]:
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.parsing import load_mask

    return load_image(str(row["path"])), load_mask({k: str(row[k]) for k in ("mask", "layout")})


def parsing_transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.data.parsing import load_pair

    size = input_size(cfg)
    images, masks = [], []
    for path, mask, layout in zip(batch["path"], batch["mask"], batch["layout"], strict=True):
        row = {"path": str(path), "mask": str(mask), "layout": str(layout)}
        if train:
            image, m = _load_mask_row(row)
            image, m = augment_pair(image, m, size, rng, cfg)
        else:
            image, m = load_pair(row, size)
        images.append(image)
        masks.append(m)
    return {"image": np.stack(images), "label": np.stack(masks).astype(np.int64)}


def build_parsing(cfg: dict) -> nn.Module:
    from faceattr_ray.models import ParsingConfig, ParsingNet

    return Route(ParsingNet(ParsingConfig.from_dict(cfg["ssp_ssg"]["parsing"])), "forward")


def parsing_loss(model, batch: dict, cfg: dict):
    return part_loss(model(batch["image"]), batch["label"], cfg)


PARSING_JOB = Job(name="parsing", build=build_parsing, rows=parsing_rows,
                  transform=parsing_transform, loss=parsing_loss)


# --- SSP+SSG, jointly ---------------------------------------------------------------------------


def joint_rows(cfg: dict, split: str) -> Rows:
    """Attribute rows of the CelebA-layout root, then (``parsing_data``) parsing rows: as many as
    ``parsing_share`` of the attribute rows, drawn by the seed, attribute labels untagged."""
    from faceattr_ray.data.parsing import parsing_rows as read_rows
    from faceattr_ray.errors import DataError
    from faceattr_ray.train.finetune import anet_rows

    rows = [dict(r, mask="", layout="") for r in anet_rows(cfg, split)]
    if not cfg.get("parsing_data") or not rows:
        return rows
    try:
        parts = read_rows(cfg["parsing_data"], split)
    except DataError:
        if split == "train":
            raise
        return rows
    want = min(len(parts), max(1, int(round(cfg.get("parsing_share", 0.25) * len(rows)))))
    rng = np.random.default_rng([cfg.get("seed", 0), 21, {"train": 0, "val": 1}.get(split, 2)])
    untagged = np.full(len(rows[0]["label"]), np.nan, np.float32)
    for k in rng.permutation(len(parts))[:want]:
        rows.append({"path": parts[k]["path"], "label": untagged, "box": list(NO_BOX),
                     "mask": parts[k]["mask"], "layout": parts[k]["layout"]})
    return rows


def joint_transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.data.decode import load_image_cached
    from faceattr_ray.data.parsing import load_pair
    from faceattr_ray.train.finetune import training_crop

    size = input_size(cfg)
    images, masks = [], []
    for path, box, mask, layout in zip(batch["path"], batch["box"], batch["mask"],
                                       batch["layout"], strict=True):
        if str(mask):
            row = {"path": str(path), "mask": str(mask), "layout": str(layout)}
            if train:
                image, m = augment_pair(*_load_mask_row(row), size, rng, cfg)
            else:
                image, m = load_pair(row, size)
        else:
            image = load_image_cached(str(path), cfg.get("image_cache_mb", 0))
            image = training_crop(image, box, cfg, size, train, rng)
            if train and rng.random() < 0.5:
                image = np.ascontiguousarray(image[:, ::-1])
            m = np.full((size, size), IGNORE, np.uint8)
        images.append(image)
        masks.append(m)
    return {"image": np.stack(images), "label": np.asarray(batch["label"], np.float32),
            "mask": np.stack(masks).astype(np.int64)}


class SSPSSGWithParts(nn.Module):
    """Attribute logits and part logits in one forward (DDP syncs what forward computes). A
    frozen parsing network stays in eval mode (its batch-norm statistics are kept too)."""

    def __init__(self, net: nn.Module, freeze_parsing: bool = False):
        super().__init__()
        self.net = net
        net.freeze_parsing = freeze_parsing
        if freeze_parsing:
            net.parsing.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.net.freeze_parsing:
            self.net.parsing.eval()
        return self

    def forward(self, x: torch.Tensor):
        features, parts = self.net.features_and_parts(x)
        return self.net.attribute_logits(features), parts


def build_joint(cfg: dict) -> nn.Module:
    from faceattr_ray.models import SSPSSGConfig, SSPSSGNet

    net = SSPSSGNet(SSPSSGConfig.from_dict(cfg["ssp_ssg"]))
    return SSPSSGWithParts(net, bool(cfg.get("freeze_parsing", False)))


def joint_loss(model, batch: dict, cfg: dict):
    logits, parts = model(batch["image"])
    loss, stats = masked_bce(logits, batch["label"])
    weight = float(cfg.get("parsing_weight", 1.0))
    if weight > 0 and not cfg.get("freeze_parsing"):
        p_loss, _ = part_loss(parts, batch["mask"], cfg)
        loss = loss + weight * p_loss
    return loss, stats


JOINT_JOB = Job(name="finetune-ssp-ssg", build=build_joint, rows=joint_rows,
                transform=joint_transform, loss=joint_loss)
