"""Does the parsing mean something? Per-part IoU where the true masks are known, and, on real
aligned faces with no masks, whether the eye, nose and mouth regions sit where CelebA's
alignment puts those landmarks.

CelebA's aligned crops (178 x 218) are made by a similarity transform that brings the five
landmarks close to fixed positions; `CELEBA_ALIGNED_LANDMARKS` are those positions, about the
means of ``list_landmarks_align_celeba.txt`` (left eye, right eye, nose tip, left and right
mouth corners; x, y in pixels of the 178 x 218 crop), as the dataset documents them and as
widely reported. They scale with the crop (celeba-mini's 89 x 109 is exactly half).

The landmark check compares:
- each eye's region centroid (the eyes part split at the crop's vertical midline) with that
  eye's landmark;
- the mouth region's centroid with the midpoint of the mouth corners;
- the nose region's centroid with the nose tip in x only, and in y only that it lies between
  the eye line and the tip (a nose region reaches up to the eyes, so its centroid sits above
  the tip by construction).
"""

from __future__ import annotations

import numpy as np

from faceattr_ray.data.parts import EYES, MOUTH, NOSE
from faceattr_ray.metrics import confusion_matrix, intersection_over_union

CELEBA_ALIGNED_SIZE = (178, 218)  # (W, H)
CELEBA_ALIGNED_LANDMARKS = {
    "left_eye": (69.0, 111.0), "right_eye": (108.0, 111.0), "nose": (88.0, 135.0),
    "mouth_left": (72.0, 152.0), "mouth_right": (106.0, 152.0),
}


def expected_positions(width: int, height: int) -> dict[str, tuple[float, float]]:
    """Where the eyes, the nose tip and the mouth centre sit in a ``width`` x ``height``
    aligned CelebA crop (pixel coordinates; pixel centres at integer + 0.5 -> subtract it)."""
    sx, sy = width / CELEBA_ALIGNED_SIZE[0], height / CELEBA_ALIGNED_SIZE[1]
    lm = CELEBA_ALIGNED_LANDMARKS
    mouth = ((lm["mouth_left"][0] + lm["mouth_right"][0]) / 2,
             (lm["mouth_left"][1] + lm["mouth_right"][1]) / 2)
    pts = {"left_eye": lm["left_eye"], "right_eye": lm["right_eye"], "nose": lm["nose"],
           "mouth": mouth}
    return {k: (x * sx, y * sy) for k, (x, y) in pts.items()}


def _centroid(on: np.ndarray) -> tuple[float, float] | None:
    ys, xs = np.nonzero(on)
    if len(xs) == 0:
        return None
    return float(xs.mean()), float(ys.mean())


def part_centroids(labels: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """Centroids (x, y) of the left eye, right eye, nose and mouth regions of an (H, W) label
    map (None where the part is absent)."""
    w = labels.shape[1]
    eyes = labels == EYES
    left, right = eyes.copy(), eyes.copy()
    left[:, w // 2:] = False  # the image's left: the person's right eye, CelebA's "lefteye"
    right[:, :w // 2] = False
    return {"left_eye": _centroid(left), "right_eye": _centroid(right),
            "nose": _centroid(labels == NOSE), "mouth": _centroid(labels == MOUTH)}


def landmark_check(label_maps: list[np.ndarray], tolerance: float) -> dict:
    """Per landmark, over aligned CelebA-style label maps (each at its crop's size): the share
    of faces whose region centroid is within ``tolerance`` pixels of the expected position
    (nose: x within tolerance and y between the eye line and the tip + tolerance), the median
    distance, and how often the part was missing."""
    out: dict = {"faces": len(label_maps), "tolerance_px": tolerance}
    dists: dict[str, list[float]] = {k: [] for k in ("left_eye", "right_eye", "nose", "mouth")}
    passed = {k: 0 for k in dists}
    missing = {k: 0 for k in dists}
    for labels in label_maps:
        h, w = labels.shape
        want = expected_positions(w, h)
        got = part_centroids(labels)
        eye_line = (want["left_eye"][1] + want["right_eye"][1]) / 2
        for key in dists:
            c = got[key]
            if c is None:
                missing[key] += 1
                continue
            x, y = c[0] + 0.5, c[1] + 0.5  # pixel centres
            ex, ey = want[key]
            if key == "nose":
                dists[key].append(abs(x - ex))
                passed[key] += abs(x - ex) <= tolerance and eye_line <= y <= ey + tolerance
            else:
                d = float(np.hypot(x - ex, y - ey))
                dists[key].append(d)
                passed[key] += d <= tolerance
    n = max(len(label_maps), 1)
    for key in dists:
        out[key] = {"within": passed[key] / n, "missing": missing[key] / n,
                    "median_px": float(np.median(dists[key])) if dists[key] else None}
    out["all_four_within"] = float(np.mean([out[k]["within"] for k in dists]))
    return out


def parsing_iou(predicted: list[np.ndarray], truth: list[np.ndarray], parts: int) -> dict:
    """Per-part IoU and pixel accuracy of predicted vs true label maps (same shapes)."""
    conf = np.zeros((parts, parts), np.int64)
    for p, t in zip(predicted, truth, strict=True):
        conf += confusion_matrix(t, p, parts)
    iou = intersection_over_union(conf)
    return {"iou": iou.tolist(), "mean_iou": float(np.nanmean(iou)),
            "pixel_accuracy": float(np.trace(conf) / max(conf.sum(), 1))}


def predict_parts(net, preprocess, images: list[np.ndarray], batch_size: int = 32,
                  device: str = "cpu") -> list[np.ndarray]:
    """(H, W) argmax part maps of aligned face images, each at its own size: the image is
    squeezed to the network's square input as `Predictor` frames an aligned crop, and the
    map stretched back (nearest neighbour)."""
    import torch
    import torch.nn.functional as F

    side = net.config.input_size
    out = []
    net = net.to(device).eval()
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        crops = np.stack([preprocess.face_crop(im, None, side) for im in chunk])
        with torch.inference_mode():
            probs = net.part_probabilities(preprocess.normalize(crops, device))
        for im, p in zip(chunk, probs, strict=True):
            h, w = im.shape[:2]
            up = F.interpolate(p[None], size=(h, w), mode="bilinear", align_corners=False)
            out.append(up[0].argmax(0).cpu().numpy().astype(np.uint8))
    return out
