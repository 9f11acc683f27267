"""`faceattr-ray evaluate`: per-attribute accuracy of a bundle on any CelebA-layout root.

Prints a table like the paper's Table 1 (ours, the majority-class baseline of the same split,
the paper's figure) and writes the same numbers as JSON.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from faceattr_ray.errors import DataError


def predict_scores(
    predictor, paths: list[str], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Attribute scores of each image's dominant face, (N, A); images with no face score 0.

    Returns the scores and a boolean mask of the images where a face was found.
    """
    from faceattr_ray.data.decode import load_image

    n_attr = len(predictor.attributes)
    scores = np.zeros((len(paths), n_attr), np.float32)
    found = np.zeros(len(paths), bool)
    # Decoding in threads overlaps it with the model, as the Ray pipeline does with CPU tasks.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), batch_size):
            images = list(pool.map(load_image, paths[start : start + batch_size]))
            for k, result in enumerate(predictor.predict(images)):
                if result.faces:
                    scores[start + k] = result.faces[0].attributes
                    found[start + k] = True
    return scores, found


def point_metrics(labels: np.ndarray, scores: np.ndarray, names: list[str],
                  bundle_config: dict, operating_point: str | None = None) -> dict:
    """`attribute_metrics` at ``operating_point`` (default "zero": score > 0) of a bundle
    (``bundle_config``; ``names`` are columns of ``scores``), plus "operating_point" (what was
    used, `resolve_point`) and "points": per stored point (and zero), the per-attribute and mean
    accuracy, balanced accuracy, AP, precision and recall."""
    from faceattr_ray.heads.points import OperatingPoints, resolve_point
    from faceattr_ray.metrics import attribute_metrics

    thresholds, described = resolve_point(bundle_config, names, operating_point or "zero")
    metrics = attribute_metrics(labels, scores, names, thresholds)
    stored = OperatingPoints.from_config(bundle_config, names)
    keys = ("accuracy", "balanced_accuracy", "average_precision", "precision", "recall")
    points = {}
    for point in stored.points() if stored else ["zero"]:
        m = attribute_metrics(labels, scores, names, resolve_point(bundle_config, names,
                                                                   point)[0])
        points[point] = {"mean": {**m["mean"], "unreachable": stored.unreachable(point)
                                  if stored else []},
                         "attributes": {n: {k: a[k] for k in keys}
                                        for n, a in m["attributes"].items()}}
    metrics.update(operating_point=described, points=points)
    return metrics


def evaluate_celeba(
    model: str,
    celeba_root: str,
    split: str = "test",
    localizer: str = "full",
    limit: int | None = None,
    device: str | None = None,
    operating_point: str | None = None,
) -> dict:
    """Metrics of ``model`` on ``split`` of ``celeba_root`` (attributes both of them know), at
    ``operating_point`` (`point_metrics`; default score > 0)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data import read_celeba
    from faceattr_ray.heads.points import parse_point
    from faceattr_ray.predictor import Predictor

    if operating_point is not None:
        parse_point(operating_point)  # a typo fails before any image is read
    data = read_celeba(celeba_root, split=split)
    paths, labels = list(data.paths), data.labels
    if limit:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise DataError(f"{celeba_root}: the {split} split is empty")
    bundle = load_bundle(model)
    predictor = Predictor(bundle, device=device, localizer=localizer)
    shared = [n for n in predictor.attributes if n in data.names]
    if not shared:
        raise DataError(f"{model} predicts none of the attributes of {celeba_root}")
    start = time.time()
    scores, found = predict_scores(predictor, paths)
    seconds = time.time() - start
    model_cols = [predictor.attributes.index(n) for n in shared]
    data_cols = [list(data.names).index(n) for n in shared]
    metrics = point_metrics(labels[:, data_cols], scores[:, model_cols], shared, bundle.config,
                            operating_point)
    metrics.update(
        split=split, images=len(paths), faces_found=int(found.sum()), localizer=localizer,
        seconds=round(seconds, 2), images_per_s=round(len(paths) / max(seconds, 1e-9), 1),
        celeba_root=celeba_root, model=model,
        missing_attributes=[n for n in data.names if n not in shared],
    )  # fmt: skip
    return metrics


# --- a photo folder with face boxes and per-face labels ----------------------------------------

PHOTO_LOCALIZERS = ("lnet", "cascade", "full", "boxes")


def _label_value(value, where: str) -> float:
    """1 / True -> 1; 0, -1 / False -> 0; null -> unknown (NaN). Anything else is an error:
    a typo like "yes" must not silently count as absent."""
    if value is None:
        return float("nan")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (1, 0, -1):
        return 1.0 if value == 1 else 0.0
    raise DataError(f"{where}: a label is 1, 0, -1, true, false or null, got {value!r}")


def _box_value(box, where: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a box is [x1, y1, x2, y2] numbers, got {box!r}") from None
    if len(values) != 4 or not all(np.isfinite(values)):
        raise DataError(f"{where}: a box is [x1, y1, x2, y2] numbers, got {box!r}")
    if not (values[2] > values[0] and values[3] > values[1]):
        raise DataError(f"{where}: a box must have x2 > x1 and y2 > y1, got {list(values)}")
    return values  # type: ignore[return-value]


def read_photo_labels(labels_json: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                                  list[str]]:
    """A boxes-and-labels file -> ({file: (boxes (G, 4), labels (G, L))}, the L label names).

    Format: ``{"file.jpg": [{"box": [x1, y1, x2, y2], "Male": 1, "Smiling": 0, ...}, ...]}``;
    a face may also be a bare box (no labels). Labels are 1/0 or 1/-1 (or true/false); a label
    a face does not give, or null, is unknown (NaN) and left out of that attribute's figures.
    Every problem is a `DataError` naming the file, photo and face.
    """
    import json
    import os

    if not os.path.isfile(labels_json):
        raise DataError(f"labels file not found: {labels_json}")
    try:
        with open(labels_json) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{labels_json}: not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{labels_json}: not a UTF-8 JSON text file") from None
    if not isinstance(raw, dict):
        raise DataError(f'{labels_json}: expected a JSON object {{"file.jpg": [faces]}}, '
                        f"got {type(raw).__name__}")
    names: list[str] = []  # label names in order of first appearance
    parsed: dict[str, list[tuple[tuple, dict]]] = {}
    for photo, faces in raw.items():
        if not isinstance(faces, list):
            raise DataError(f"{labels_json}: {photo}: expected a list of faces, got "
                            f"{type(faces).__name__}")
        rows = []
        for k, face in enumerate(faces):
            where = f"{labels_json}: {photo}: face {k}"
            if isinstance(face, dict):
                if "box" not in face:
                    raise DataError(f"{where}: no \"box\"")
                labels = {n: _label_value(v, f"{where}: {n}") for n, v in face.items()
                          if n != "box"}
                rows.append((_box_value(face["box"], where), labels))
            else:
                rows.append((_box_value(face, where), {}))
            names.extend(n for n in rows[-1][1] if n not in names)
        parsed[photo] = rows
    out = {}
    for photo, rows in parsed.items():
        boxes = np.array([r[0] for r in rows], np.float64).reshape(-1, 4)
        labels = np.array([[r[1].get(n, np.nan) for n in names] for r in rows],
                          np.float32).reshape(len(rows), len(names))
        out[photo] = (boxes, labels)
    return out, names


def photo_metrics(
    detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    truth: list[tuple[np.ndarray, np.ndarray]],
    names: list[str],
    iou: float = 0.5,
    photos: list[str] | None = None,
) -> dict:
    """Attribute accuracy of the faces found, judged on the faces they match.

    ``detections``: per photo (boxes (K, 4), face scores (K,), attribute scores (K, A));
    ``truth``: per photo (boxes (G, 4), labels (G, A), NaN = unknown), columns as ``names``.
    Detections match true boxes one to one at IoU >= ``iou``, by face score
    (`match_detections`); a detection that matches nothing is a false detection, a true face no
    detection matches is missed. Attribute figures (`attribute_metrics`, score > 0 = present)
    count matched faces only, so they judge description apart from localization; their
    ``"images"`` (as `format_table` reads it) is the number of matched faces scored.
    """
    from faceattr_ray.evaluation.localization_metrics import match_detections
    from faceattr_ray.metrics import attribute_metrics

    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} detection lists for {len(truth)} photos")
    photos = photos if photos is not None else [str(i) for i in range(len(truth))]
    n_attr = len(names)
    matched_truth, matched_scores, per_photo = [], [], {}
    faces = matched = false = found = 0
    for name, (boxes, face_scores, scores), (gt_boxes, gt_labels) in zip(
            photos, detections, truth, strict=True):
        match = match_detections(np.asarray(boxes, np.float64).reshape(-1, 4), face_scores,
                                 gt_boxes, iou)
        hit = match >= 0
        matched_truth.append(np.asarray(gt_labels, np.float32).reshape(-1, n_attr)[match[hit]])
        matched_scores.append(np.asarray(scores, np.float32).reshape(-1, n_attr)[hit])
        per_photo[name] = {"faces": len(gt_boxes), "detections": len(match),
                           "matched": int(hit.sum()), "false_detections": int((~hit).sum())}
        faces += len(gt_boxes)
        found += len(match)
        matched += int(hit.sum())
        false += int((~hit).sum())
    y = np.concatenate(matched_truth) if matched_truth else np.zeros((0, n_attr), np.float32)
    s = np.concatenate(matched_scores) if matched_scores else np.zeros((0, n_attr), np.float32)
    metrics = attribute_metrics(y, s, names)
    images = max(len(truth), 1)
    metrics.update(
        photos=len(truth), faces=faces, detections=found, matched=matched,
        missed=faces - matched, match_rate=matched / faces if faces else None,
        false_detections=false, false_per_photo=false / images, iou=iou, per_photo=per_photo,
    )  # fmt: skip
    return metrics


def evaluate_photos(
    model: str,
    photos_dir: str,
    labels_json: str,
    localizer: str = "lnet",
    iou: float = 0.5,
    limit: int | None = None,
    device: str | None = None,
    batch_size: int = 8,
) -> dict:
    """Metrics of ``model`` on a folder of photos whose faces ``labels_json`` boxes and labels
    (`read_photo_labels`), per `photo_metrics`.

    ``localizer``: "lnet" or "cascade" run that localizer with every face above the bundle's
    threshold (``all_faces``); "full" takes each photo whole as one face; "boxes" takes the
    given boxes as the detections, so the figures are ANet's alone. Every face, found or given,
    is framed by the bundle's preprocessing (`Predictor.face_crops`), as `annotate` frames it.
    """
    import os

    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.localizers import Detection
    from faceattr_ray.predictor import Predictor

    if localizer not in PHOTO_LOCALIZERS:
        raise ValueError(f"localizer must be one of {PHOTO_LOCALIZERS}, not {localizer!r}")
    if not os.path.isdir(photos_dir):
        raise DataError(f"photo folder not found: {photos_dir}")
    labelled, label_names = read_photo_labels(labels_json)
    photos = list(labelled)[:limit] if limit else list(labelled)
    if not photos:
        raise DataError(f"{labels_json}: no photos listed")
    # Every listed photo must be there before any model work: a missing one would otherwise
    # surface after minutes, or silently shrink the set.
    missing = [p for p in photos if not os.path.isfile(os.path.join(photos_dir, p))]
    if missing:
        raise DataError(f"{photos_dir}: {len(missing)} photo(s) listed in {labels_json} not "
                        f"found (first: {missing[0]})")
    bundle = load_bundle(model)
    shared = [n for n in bundle.attributes if n in label_names]
    if not shared:
        raise DataError(f"{model} predicts none of the attributes of {labels_json} "
                        f"({', '.join(label_names) or 'no labels given'})")
    if localizer == "boxes":
        # "describe" builds ANet and heads only. A "full" predictor would not do: it frames
        # the whole image and ignores the box, whereas the given boxes must be framed exactly as
        # a localizer's are.
        predictor = Predictor(bundle, device=device, localizer="cascade", parts="describe")
    else:
        predictor = Predictor(bundle, device=device, localizer=localizer, all_faces=True)
    model_cols = [predictor.attributes.index(n) for n in shared]
    label_cols = [label_names.index(n) for n in shared]

    start = time.time()
    detections, truth = [], []
    for first in range(0, len(photos), batch_size):
        names = photos[first : first + batch_size]
        images = [load_image(os.path.join(photos_dir, p)) for p in names]
        if localizer == "boxes":
            found = [[Detection(tuple(float(v) for v in box), 1.0) for box in labelled[p][0]]
                     for p in names]
        else:
            found = predictor.localize(images)
        scores, _ = predictor.describe(predictor.face_crops(images, found))
        k = 0
        for p, dets in zip(names, found, strict=True):
            boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
            face_scores = np.array([d.score for d in dets], np.float64)
            detections.append((boxes, face_scores, scores[k : k + len(dets)][:, model_cols]))
            k += len(dets)
            gt_boxes, gt_labels = labelled[p]
            truth.append((gt_boxes, gt_labels[:, label_cols]))
    seconds = time.time() - start
    metrics = photo_metrics(detections, truth, shared, iou, photos)
    metrics.update(
        localizer=localizer, threshold=None if localizer == "boxes" else bundle.threshold,
        seconds=round(seconds, 2), photos_dir=photos_dir, labels=labels_json, model=model,
        missing_attributes=[n for n in label_names if n not in shared],
    )  # fmt: skip
    return metrics
