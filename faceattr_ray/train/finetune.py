"""Fine-tuning with attribute tags (paper sections 2.1, 2.2): three jobs, run one after another.

- LNet_o on whole images (resized to its input size), sigmoid cross-entropy on the tags.
- LNet_s on head-shoulder boxes: the window comes from the current LNet_o's averaged response
  map (`headshoulder_boxes`), or, documented fallback, from the data's
  `list_headshoulder_bbox.txt` (generated data) or the whole image.
- ANet on random patches of enlarged face crops (multi-view crops); the face box comes from
  the data's face boxes when it has them (generated/in-the-wild CelebA), else the image is an
  aligned face crop.
Labels may hold NaN (untagged); those are masked out of the loss. Any attribute set works: the
names come from the data.

``negatives`` (a list of image paths, optional): background-only images added to both LNets'
training rows with every tag absent. Still image-level tags and no boxes: an image with no face
shows none of the attributes. Why: with in-the-wild training images the clutter otherwise costs
the LNets nothing, and their averaged maps light up on it as much as on the face. Off unless
asked for (what it measured: README, localization notes).
"""

from __future__ import annotations

import json
import os

import numpy as np
from torch import nn

from faceattr_ray.train.anet_pretrain import (
    NO_BOX,
    ANetWithHead,
    face_crop,
    random_patch,
    window_size,
)
from faceattr_ray.train.common import Batch, Job, Route, Rows
from faceattr_ray.train.losses import masked_bce

SPLITS = {"train": 0, "val": 1, "test": 2}


def read_table(cfg: dict):
    from faceattr_ray.data.celeba import read_celeba

    return read_celeba(cfg["data"], image_dir=cfg.get("image_dir"))


def _label_columns(data, cfg: dict) -> list[int]:
    names = list(data.names)
    wanted = cfg.get("attributes") or names
    return [names.index(n) for n in wanted]


def _split_indices(data, split: str, cfg: dict) -> np.ndarray:
    n = len(data.paths)
    if data.partition is None:  # no partition file: every 10th image is validation
        part = np.where(np.arange(n) % 10 == 9, 1, 0)
    else:
        part = np.asarray(data.partition)
    indices = np.flatnonzero(part == SPLITS[split])
    limit = cfg.get("limit")
    return indices[:limit] if limit else indices


def _rows(cfg: dict, split: str, box_source: str | None) -> Rows:
    data = read_table(cfg)
    columns = _label_columns(data, cfg)
    boxes = None
    if box_source == "face" and data.bbox is not None:
        boxes = np.asarray(data.bbox, dtype=float)
    elif box_source == "headshoulder":
        boxes = _headshoulder_table(cfg, data)
    out = []
    for i in _split_indices(data, split, cfg):
        row = {"path": str(data.paths[i]),
               "label": data.labels[i, columns].astype(np.float32)}
        if box_source is not None:
            row["box"] = list(map(float, boxes[i])) if boxes is not None else list(NO_BOX)
        out.append(row)
    if split == "train" and box_source != "face":
        out += _negative_rows(cfg, len(columns), box_source == "headshoulder")
    return out


def _negative_rows(cfg: dict, num_labels: int, with_box: bool) -> Rows:
    """Background-only images (cfg["negatives"]), every tag absent; LNet_s's rows carry LNet_o's
    window of each when one was computed, else the whole image."""
    paths = [str(p) for p in cfg.get("negatives") or []]
    saved = (_saved_headshoulder(cfg) or {}) if with_box and paths else {}
    rows = []
    for path in paths:
        row = {"path": path, "label": np.zeros(num_labels, np.float32)}
        if with_box:
            row["box"] = list(map(float, saved.get(path, NO_BOX)))
        rows.append(row)
    return rows


# --- LNet_o -----------------------------------------------------------------------------------


def _whole_image(image: np.ndarray, size: int) -> np.ndarray:
    from faceattr_ray.crops import crop_resize

    h, w = image.shape[:2]
    return crop_resize(image, (0.0, 0.0, float(w), float(h)), (size, size))


def _maybe_flip(image: np.ndarray, train: bool, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1] if train and rng.random() < 0.5 else image)


def lnet_o_rows(cfg: dict, split: str) -> Rows:
    return _rows(cfg, split, None)


def lnet_o_transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.data.decode import load_image

    size = cfg["lnet"]["input_size"]
    images = [_maybe_flip(_whole_image(load_image(str(p)), size), train, rng)
              for p in batch["path"]]
    return {"image": np.stack(images), "label": np.asarray(batch["label"], np.float32)}


def build_lnet(cfg: dict) -> nn.Module:
    from faceattr_ray.models import LNet, LNetConfig

    return Route(LNet(LNetConfig.from_dict(cfg["lnet"])), "forward")


def attribute_loss(model, batch: dict, cfg: dict):
    return masked_bce(model(batch["image"]), batch["label"])


LNET_O_JOB = Job(name="finetune-lnet_o", build=build_lnet, rows=lnet_o_rows,
                 transform=lnet_o_transform, loss=attribute_loss)


# --- LNet_s -----------------------------------------------------------------------------------


def lnet_s_rows(cfg: dict, split: str) -> Rows:
    return _rows(cfg, split, "headshoulder")


def lnet_s_transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.crops import crop_resize
    from faceattr_ray.data.decode import load_image

    size = cfg["lnet"]["input_size"]
    images = []
    for path, box in zip(batch["path"], batch["box"], strict=True):
        image = load_image(str(path))
        if np.isnan(np.asarray(box, float)).any():
            images.append(_whole_image(image, size))
        else:
            images.append(crop_resize(image, tuple(float(v) for v in box), (size, size)))
        images[-1] = _maybe_flip(images[-1], train, rng)
    return {"image": np.stack(images), "label": np.asarray(batch["label"], np.float32)}


LNET_S_JOB = Job(name="finetune-lnet_s", build=build_lnet, rows=lnet_s_rows,
                 transform=lnet_s_transform, loss=attribute_loss)


def _saved_headshoulder(cfg: dict) -> dict[str, list[float]] | None:
    """{path: box} that `headshoulder_boxes` wrote for this job (LNet_o's head-shoulder boxes), if any."""
    path = cfg.get("headshoulder_boxes")
    if not (path and os.path.exists(path)):
        return None
    with open(path) as f:
        return json.load(f)


def _headshoulder_table(cfg: dict, data) -> np.ndarray | None:
    """(N, 4) head-shoulder boxes for every image of the table, NaN where none is known."""
    saved = _saved_headshoulder(cfg)
    if saved is not None:
        table = np.full((len(data.paths), 4), np.nan)
        index = {str(p): i for i, p in enumerate(data.paths)}
        for p, box in saved.items():
            if p in index:
                table[index[p]] = box
        return table
    return None if data.headshoulder is None else np.asarray(data.headshoulder, float)


def headshoulder_boxes(lnet_o: nn.Module, paths: list[str], batch_size: int = 16,
                       device: str = "cpu", cfg: dict | None = None) -> dict[str, list[float]]:
    """The head-shoulder box of each image from LNet_o: the localizer's first stage
    (`faceattr_ray.localizers.LNetLocalizer.head_shoulders`: best-scoring window on the averaged
    response map, with its margin), reading images with the job's preprocessing. Images stream
    through in batches; only the boxes are kept."""
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.train.common import preprocess_of

    localizer = LNetLocalizer(lnet_o, None, threshold=None, device=device, batch_size=batch_size,
                              **preprocess_of(cfg or {}).lnet_options())
    out = {}
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        traces = localizer.head_shoulders([load_image(p) for p in chunk])
        for path, trace in zip(chunk, traces, strict=True):
            if trace.head_shoulders:
                out[path] = [float(v) for v in trace.head_shoulders[0]]
    return out


# --- ANet -------------------------------------------------------------------------------------


def anet_rows(cfg: dict, split: str) -> Rows:
    return _rows(cfg, split, "face")


def anet_transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.data.decode import load_image_cached

    size = window_size(cfg)
    images = []
    for path, box in zip(batch["path"], batch["box"], strict=True):
        image = load_image_cached(str(path), cfg.get("image_cache_mb", 0))
        crop = training_crop(image, box, cfg, size, train, rng)
        images.append(random_patch(crop, cfg, train, rng))
    return {"image": np.stack(images), "label": np.asarray(batch["label"], np.float32)}


def training_crop(image: np.ndarray, box, cfg: dict, size: int, train: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """The face crop a row gives an attribute network: when training with cfg["wild"], an
    aligned row (no box) becomes a wild crop with probability wild["share"]; otherwise the
    job's framing of its box (`face_crop`), and when training with cfg["jitter"], an aligned
    crop is zoomed, turned and recoloured a little (`data.face_jitter.jitter_aligned`)."""
    aligned = np.isnan(np.asarray(box, dtype=float)).all()
    wild = cfg.get("wild") if train else None
    if wild and aligned and rng.random() < wild["share"]:
        return wild_crop(image, cfg, size, rng)
    crop = face_crop(image, box, cfg, size)
    if train and aligned and cfg.get("jitter"):
        from faceattr_ray.data.face_jitter import jitter_aligned

        crop = jitter_aligned(crop, cfg["jitter"], rng)
    return crop


_SCENE_MAKERS: dict = {}  # one per process and background list: photos decoded once


def wild_crop(aligned: np.ndarray, cfg: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """An aligned face as ANet meets it in a photo: pasted small on a real background, turned,
    recoloured, degraded, found with a localizer's box errors and framed by the job's framing
    rule (`data.scenes.wild_face_window`)."""
    from faceattr_ray.data.scenes import portrait_maker, wild_face_window
    from faceattr_ray.train.common import preprocess_of

    wild = cfg["wild"]
    key = (tuple(wild["backgrounds"]), wild.get("context_share", 0.0))
    if key not in _SCENE_MAKERS:
        _SCENE_MAKERS[key] = portrait_maker(*key)
    pre = preprocess_of(cfg)
    if pre.face_box is None:
        raise ValueError("wild crops need preprocess.face_box (the framing rule)")
    return wild_face_window(aligned, _SCENE_MAKERS[key], rng, size,
                            tuple(wild.get("face_px", (24, 110))), pre.face_box)


def build_anet(cfg: dict) -> nn.Module:
    from faceattr_ray.models import ANet, ANetConfig

    return ANetWithHead(ANet(ANetConfig.from_dict(cfg["anet"])), "attribute_logits")


def anet_loss(model, batch: dict, cfg: dict):
    _, logits = model(batch["image"])
    return masked_bce(logits, batch["label"], cfg.get("label_smoothing", 0.0))


ANET_JOB = Job(name="finetune-anet", build=build_anet, rows=anet_rows,
               transform=anet_transform, loss=anet_loss)
