"""Does the parsing mean something? Per-part IoU where the true masks are known, and, on real
aligned faces with no masks, whether the eye, nose and mouth regions sit where CelebA's
alignment puts those landmarks.

The expected positions are measured, not remembered: `data.aligned_landmarks` finds the eyes,
nostrils and mouth as dark blobs of the mean of the 7,984 celeba-mini faces (they agree within
0.6 px with the means of CelebA's ``list_landmarks_align_celeba.txt`` as usually quoted, halved).
They scale with the crop. A check on faces moved by a known similarity transform takes each
face's own expected positions (`landmark_check`'s ``expected``), and `following` says whether the
regions move with the face (a fixed template passes the plain check but not that one).

The landmark check compares:
- each eye's region centroid (the eyes part split at the crop's vertical midline) with that
  eye's landmark;
- the mouth region's centroid with the mouth's centre;
- the nose region's centroid with the nostrils in x only, and in y only that it lies between
  the eye line and the nostrils (a nose region reaches up to the eyes, so its centroid sits
  above the nostrils by construction).
"""

from __future__ import annotations

import numpy as np

from faceattr_ray.data.aligned_landmarks import scaled_landmarks
from faceattr_ray.data.parts import EYES, MOUTH, NOSE
from faceattr_ray.metrics import confusion_matrix, intersection_over_union


def expected_positions(width: int, height: int) -> dict[str, tuple[float, float]]:
    """Where the eyes, the nose (its nostrils) and the mouth centre sit in a ``width`` x
    ``height`` aligned CelebA crop (continuous pixel coordinates), as measured from the mean
    face (`data.aligned_landmarks.ALIGNED_LANDMARKS`)."""
    lm = scaled_landmarks(width, height)
    return {"left_eye": lm["left_eye"], "right_eye": lm["right_eye"], "nose": lm["nostrils"],
            "mouth": lm["mouth"]}


def _centroid(on: np.ndarray) -> tuple[float, float] | None:
    ys, xs = np.nonzero(on)
    if len(xs) == 0:
        return None
    return float(xs.mean()), float(ys.mean())


def part_centroids(labels: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """Centroids (x, y) of the left eye, right eye, nose and mouth regions of an (H, W) label
    map (None where the part is absent); the eyes part is split at the middle column (also for
    moved faces: a fixed split keeps a fixed template's centroids fixed)."""
    half = labels.shape[1] // 2
    eyes = labels == EYES
    left, right = eyes.copy(), eyes.copy()
    left[:, half:] = False  # the image's left: the person's right eye, CelebA's "lefteye"
    right[:, :half] = False
    return {"left_eye": _centroid(left), "right_eye": _centroid(right),
            "nose": _centroid(labels == NOSE), "mouth": _centroid(labels == MOUTH)}


def landmark_check(label_maps: list[np.ndarray], tolerance: float,
                   expected: list[dict] | None = None) -> dict:
    """Per landmark, over aligned CelebA-style label maps (each at its crop's size): the share
    of faces whose region centroid is within ``tolerance`` pixels of the expected position
    (nose: x within tolerance and y between the eye line and the nostrils + tolerance), the
    median distance, and how often the part was missing. ``expected``: each map's own
    positions (`expected_positions`' keys), for faces moved off the alignment."""
    out: dict = {"faces": len(label_maps), "tolerance_px": tolerance}
    dists: dict[str, list[float]] = {k: [] for k in ("left_eye", "right_eye", "nose", "mouth")}
    passed = {k: 0 for k in dists}
    missing = {k: 0 for k in dists}
    for k, labels in enumerate(label_maps):
        h, w = labels.shape
        want = expected[k] if expected is not None else expected_positions(w, h)
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


def following(label_maps: list[np.ndarray], expected: list[dict]) -> dict:
    """Do the regions move with the face? Per landmark and axis, over faces moved by different
    known amounts: the correlation and the least-squares slope of the region centroid against
    the expected position (1 and 1 when the parsing follows the face; 0 and 0 for a fixed
    template, whatever its plain check says)."""
    out: dict = {}
    for key in ("left_eye", "right_eye", "nose", "mouth"):
        got, want = [], []
        for labels, exp in zip(label_maps, expected, strict=True):
            c = part_centroids(labels)[key]
            if c is not None:
                got.append((c[0] + 0.5, c[1] + 0.5))
                want.append(exp[key])
        g, t = np.asarray(got).reshape(-1, 2), np.asarray(want).reshape(-1, 2)
        for axis, name in ((0, "x"), (1, "y")):
            if len(g) < 3 or t[:, axis].std() == 0:
                out[f"{key}_{name}"] = {"r": None, "slope": None}
                continue
            tc, gc = t[:, axis] - t[:, axis].mean(), g[:, axis] - g[:, axis].mean()
            r = float((tc * gc).sum() / np.sqrt((tc ** 2).sum() * (gc ** 2).sum() + 1e-12))
            out[f"{key}_{name}"] = {"r": r, "slope": float((tc * gc).sum() / (tc ** 2).sum())}
    rs = [v["r"] for v in out.values() if v["r"] is not None]
    out["mean_r"] = float(np.mean(rs)) if rs else None
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


def moved_faces(images: list[np.ndarray], shift: float, scale: tuple[float, float],
                seed: int = 0) -> tuple[list[np.ndarray], list[dict]]:
    """Each aligned face moved by its own random similarity (scale in ``scale``, shift up to
    ``shift`` pixels each way; `data.face_jitter.move_face`), and where its landmarks then are."""
    from faceattr_ray.data.face_jitter import move_face, moved_point

    rng = np.random.default_rng(seed)
    moved, expected = [], []
    for image in images:
        h, w = image.shape[:2]
        s = float(rng.uniform(*scale))
        dx, dy = (float(v) for v in rng.uniform(-shift, shift, 2))
        moved.append(move_face(image, None, s, dx, dy)[0])
        expected.append({k: moved_point(p, (w, h), s, dx, dy)
                         for k, p in expected_positions(w, h).items()})
    return moved, expected


def real_face_checks(parse, images: list[np.ndarray], tolerance: float, shift: float = 6.0,
                     scale: tuple[float, float] = (0.9, 1.1)) -> dict:
    """The landmark check of a parsing (``parse``: images -> label maps) on aligned faces as
    they are ("aligned") and moved by known random amounts ("moved", with `following`)."""
    plain = landmark_check(parse(images), tolerance)
    moved, expected = moved_faces(images, shift, scale)
    maps = parse(moved)
    return {"aligned": plain, "moved": {"shift_px": shift, "scale": list(scale),
                                        **landmark_check(maps, tolerance, expected)},
            "following": following(maps, expected)}
