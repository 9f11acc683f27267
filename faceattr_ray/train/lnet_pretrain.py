"""LNet+ pre-training on an image folder of object classes (paper section 2.1).

Softmax over the classes, SGD, and the paper's ten-crop augmentation: the image is resized,
then one of ten crops (centre, four corners, and their horizontal flips) is drawn per image and
step; validation uses the centre crop. Or start from torchvision's ImageNet AlexNet weights (`init`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceattr_ray.train.common import Batch, Job, Route, Rows
from faceattr_ray.train.losses import softmax_loss


def rows(cfg: dict, split: str) -> Rows:
    # Every `val_every`-th image of a class is held out (the paper keeps part of ILSVRC's
    # validation data apart for choosing hyper-parameters).
    from faceattr_ray.data import read_image_folder

    folder = read_image_folder(cfg["data"])
    every = cfg.get("val_every", 10)
    pairs = zip(folder.paths, folder.targets, strict=True)
    rows = [{"path": p, "label": int(c)} for i, (p, c) in enumerate(pairs)
            if (i % every == every - 1) == (split == "val")]
    return rows[:cfg.get("limit")]


def ten_crop(image: np.ndarray, size: int, index: int) -> np.ndarray:
    """Crop `index` of the ten: 0 centre, 1-4 corners, 5-9 the same flipped horizontally."""
    h, w = image.shape[:2]
    corners = [((h - size) // 2, (w - size) // 2), (0, 0), (0, w - size), (h - size, 0),
               (h - size, w - size)]
    y, x = corners[index % 5]
    crop = image[y:y + size, x:x + size]
    return crop[:, ::-1] if index >= 5 else crop


def resize_short_side(image: np.ndarray, short: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = short / min(h, w)
    size = (max(short, round(w * scale)), max(short, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def transform(batch: Batch, cfg: dict, train: bool, rng: np.random.Generator) -> Batch:
    from faceattr_ray.data.decode import load_image

    size = cfg["lnet"]["input_size"]
    short = round(size * 256 / 227)  # AlexNet's 256 -> 227 ratio
    images = []
    for path in batch["path"]:
        image = resize_short_side(load_image(str(path)), short)
        index = int(rng.integers(10)) if train else 0
        images.append(np.ascontiguousarray(ten_crop(image, size, index)))
    return {"image": np.stack(images), "label": batch["label"].astype(np.int64)}


def build(cfg: dict) -> Route:
    from faceattr_ray.models import LNet, LNetConfig

    return Route(LNet(LNetConfig.from_dict(cfg["lnet"])), "classify")


def loss(model, batch: dict, cfg: dict):
    return softmax_loss(model(batch["image"]), batch["label"])


JOB = Job(name="lnet-pretrain", build=build, rows=rows, transform=transform, loss=loss)


def resolve(cfg: dict) -> dict:
    """Fill the architecture from the data: as many classes as the folder has."""
    from faceattr_ray.data import read_image_folder

    classes = read_image_folder(cfg["data"]).classes
    cfg = dict(cfg)
    # LNet+ = C1-C5 + the object classifier; the attribute head comes with fine-tuning.
    cfg["lnet"] = dict(cfg.get("lnet") or {}, num_classes=len(classes), num_attributes=0)
    cfg["classes"] = classes
    return cfg
