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


def evaluate_celeba(
    model: str,
    celeba_root: str,
    split: str = "test",
    localizer: str = "full",
    limit: int | None = None,
    device: str | None = None,
) -> dict:
    """Metrics of ``model`` on ``split`` of ``celeba_root`` (attributes both of them know)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data import read_celeba
    from faceattr_ray.metrics import attribute_metrics
    from faceattr_ray.predictor import Predictor

    data = read_celeba(celeba_root, split=split)
    paths, labels = list(data.paths), data.labels
    if limit:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise DataError(f"{celeba_root}: the {split} split is empty")
    predictor = Predictor(load_bundle(model), device=device, localizer=localizer)
    shared = [n for n in predictor.attributes if n in data.names]
    if not shared:
        raise DataError(f"{model} predicts none of the attributes of {celeba_root}")
    start = time.time()
    scores, found = predict_scores(predictor, paths)
    seconds = time.time() - start
    model_cols = [predictor.attributes.index(n) for n in shared]
    data_cols = [list(data.names).index(n) for n in shared]
    metrics = attribute_metrics(labels[:, data_cols], scores[:, model_cols], shared)
    metrics.update(
        split=split, images=len(paths), faces_found=int(found.sum()), localizer=localizer,
        seconds=round(seconds, 2), images_per_s=round(len(paths) / max(seconds, 1e-9), 1),
        celeba_root=celeba_root, model=model,
        missing_attributes=[n for n in data.names if n not in shared],
    )  # fmt: skip
    return metrics
