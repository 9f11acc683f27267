"""Face-parsing datasets -> (image, part mask) pairs on our seven parts (`parts.PARTS`).

Three layouts, found by what ROOT holds:

    CelebAMask-HQ    ROOT/CelebA-HQ-img/<i>.jpg
                     ROOT/CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<class>.png
                     one binary PNG per image and part (18 classes + background = 19), often at
                     half the image's size; composed in the dataset's own order, later over
                     earlier. No split file: every 10th image is val, the next every 10th test.
    Helen / LaPa     ROOT/[<split>/]images/<stem>.jpg and ROOT/[<split>/]labels/<stem>.png: one
                     label PNG per image, 11 classes (background, skin, left/right brow, left/
                     right eye, nose, upper lip, inner mouth, lower lip, hair).
    generated        a CelebA-layout root written with ``masks=True`` (`synthetic.write_parts`):
                     ROOT/parts/<stem>.png already on our seven parts; splits from
                     list_eval_partition.txt.

Rows are plain dicts (``path``, ``mask``, ``layout``), so Ray Data can carry them; `load_mask`
reads one mask where the work runs. Nothing here imports torch.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from PIL import Image

from faceattr_ray.data import parts as P
from faceattr_ray.errors import DataError

CELEBAMASK_IMAGES = "CelebA-HQ-img"
CELEBAMASK_MASKS = "CelebAMask-HQ-mask-anno"
# CelebAMask-HQ's 18 part classes in the order its masks are composed (later over earlier), and
# our part for each. None: the class relabels nothing (glasses, earrings and necklaces lie over
# a part that keeps its label); ears are skin and hat, neck and cloth background, as in the
# seven-part Helen labelling Kalayeh et al. use.
CELEBAMASK_CLASSES: tuple[tuple[str, int | None], ...] = (
    ("skin", P.SKIN), ("nose", P.NOSE), ("eye_g", None), ("l_eye", P.EYES), ("r_eye", P.EYES),
    ("l_brow", P.BROWS), ("r_brow", P.BROWS), ("l_ear", P.SKIN), ("r_ear", P.SKIN),
    ("mouth", P.MOUTH), ("u_lip", P.MOUTH), ("l_lip", P.MOUTH), ("hair", P.HAIR),
    ("hat", P.BACKGROUND), ("ear_r", None), ("neck_l", None), ("neck", P.BACKGROUND),
    ("cloth", P.BACKGROUND),
)
# Helen (Smith et al. relabelled) and LaPa: label value -> our part.
LAPA_TO_PARTS = np.array([P.BACKGROUND, P.SKIN, P.BROWS, P.BROWS, P.EYES, P.EYES, P.NOSE,
                          P.MOUTH, P.MOUTH, P.MOUTH, P.HAIR], np.uint8)
LAYOUTS = ("celebamask-hq", "lapa", "generated")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def detect_layout(root: str) -> str:
    """Which of `LAYOUTS` ROOT is in; DataError naming what was looked for when none."""
    if not os.path.isdir(root):
        raise DataError(f"parsing data root not found: {root}")
    if os.path.isdir(os.path.join(root, CELEBAMASK_MASKS)):
        return "celebamask-hq"
    if os.path.isdir(os.path.join(root, "parts")):
        return "generated"
    if os.path.isdir(os.path.join(root, "labels")) or os.path.isdir(
            os.path.join(root, "train", "labels")):
        return "lapa"
    raise DataError(f"{root}: not a face-parsing root (expected {CELEBAMASK_MASKS}/ "
                    "(CelebAMask-HQ), labels/ or train/labels/ (Helen, LaPa) or parts/ "
                    "(generated people written with --masks))")


def parsing_rows(root: str, split: str = "train", limit: int | None = None) -> list[dict]:
    """(image, mask) rows of one split (train, val, test or all), sorted by image name."""
    if split not in (*SPLIT_CODES, "all"):
        raise DataError(f"unknown split {split!r}: use train, val, test or all")
    layout = detect_layout(root)
    rows = {"celebamask-hq": _celebamask_rows, "lapa": _lapa_rows,
            "generated": _generated_rows}[layout](root, split)
    if not rows:
        raise DataError(f"{root}: no {split} images with a mask ({layout} layout)")
    return rows[:limit] if limit else rows


def _split_by_index(k: int) -> int:
    return 1 if k % 10 == 8 else 2 if k % 10 == 9 else 0


def _celebamask_rows(root: str, split: str) -> list[dict]:
    images = os.path.join(root, CELEBAMASK_IMAGES)
    if not os.path.isdir(images):
        raise DataError(f"{root}: {CELEBAMASK_IMAGES}/ (the images) is missing")
    rows = []
    names = sorted((n for n in os.listdir(images) if n.lower().endswith(IMAGE_EXTS)),
                   key=lambda n: (len(n), n))
    for name in names:
        stem = os.path.splitext(name)[0]
        if not stem.isdigit():
            continue
        i = int(stem)
        if split != "all" and _split_by_index(i) != SPLIT_CODES[split]:
            continue
        prefix = os.path.join(root, CELEBAMASK_MASKS, str(i // 2000), f"{i:05d}")
        rows.append({"path": os.path.join(images, name), "mask": prefix,
                     "layout": "celebamask-hq"})
    return rows


def _paired(image_dir: str, label_dir: str, layout: str) -> list[dict]:
    rows = []
    for name in sorted(os.listdir(image_dir)):
        if not name.lower().endswith(IMAGE_EXTS):
            continue
        mask = os.path.join(label_dir, os.path.splitext(name)[0] + ".png")
        if os.path.exists(mask):
            rows.append({"path": os.path.join(image_dir, name), "mask": mask, "layout": layout})
    return rows


def _lapa_rows(root: str, split: str) -> list[dict]:
    if os.path.isdir(os.path.join(root, "labels")):  # one folder: our every-10th split
        rows = _paired(os.path.join(root, "images"), os.path.join(root, "labels"), "lapa")
        return [r for k, r in enumerate(rows)
                if split == "all" or _split_by_index(k) == SPLIT_CODES[split]]
    names = list(SPLIT_CODES) if split == "all" else [split]
    rows = []
    for name in names:
        folder = os.path.join(root, name)
        if os.path.isdir(os.path.join(folder, "labels")):
            rows += _paired(os.path.join(folder, "images"), os.path.join(folder, "labels"),
                            "lapa")
    return rows


def _generated_rows(root: str, split: str) -> list[dict]:
    from faceattr_ray.data.celeba import read_celeba

    data = read_celeba(root, split=split)
    rows = []
    for path in data.paths:
        mask = os.path.join(root, "parts", os.path.splitext(os.path.basename(path))[0] + ".png")
        if os.path.exists(mask):
            rows.append({"path": str(path), "mask": mask, "layout": "generated"})
    return rows


def load_mask(row: dict) -> np.ndarray:
    """(H, W) uint8 part labels (`parts.PARTS`) of one row."""
    layout, mask = row["layout"], row["mask"]
    if layout == "celebamask-hq":
        return _compose_celebamask(mask)
    labels = _read_png(mask)
    if layout == "generated":
        if labels.max(initial=0) >= P.NUM_PARTS:
            raise DataError(f"{mask}: label {labels.max()} is not one of our {P.NUM_PARTS} parts")
        return labels
    if labels.max(initial=0) >= len(LAPA_TO_PARTS):
        raise DataError(f"{mask}: label {labels.max()} is outside Helen/LaPa's 11 classes")
    return LAPA_TO_PARTS[labels]


def _read_png(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "P") else im, np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable mask ({e})") from None


def _compose_celebamask(prefix: str) -> np.ndarray:
    """One CelebAMask-HQ image's part PNGs composed into our labels, later classes over earlier."""
    found = {os.path.basename(p)[len(os.path.basename(prefix)) + 1:-4]: p
             for p in glob.glob(glob.escape(prefix) + "_*.png")}
    if not found:
        raise DataError(f"{prefix}_*.png: no part masks for this image")
    out = None
    for name, part in CELEBAMASK_CLASSES:
        if name not in found:
            continue
        on = _read_png(found[name]) > 127
        if out is None:
            out = np.zeros(on.shape, np.uint8)
        if on.shape != out.shape:
            raise DataError(f"{found[name]}: {on.shape} differs from the image's other masks "
                            f"{out.shape}")
        if part is not None:
            out[on] = part
    if out is None:
        raise DataError(f"{prefix}_*.png: none of CelebAMask-HQ's part names")
    return out


def load_pair(row: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The row's image and mask at ``size`` x ``size`` ((S, S, 3) uint8, (S, S) uint8): the
    image antialiased, the mask by nearest neighbour (labels are never averaged)."""
    from faceattr_ray.data.decode import load_image

    image = Image.fromarray(load_image(row["path"]))
    mask = Image.fromarray(load_mask(row))
    return (np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8),
            np.asarray(mask.resize((size, size), Image.NEAREST), np.uint8))
