"""The attribute table: one row per face, one per image with no face or with an error.

Every file the job writes has exactly this schema (error-only blocks included), so pandas,
pyarrow and DuckDB read the folder as one table without special handling.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from faceattr_ray import __version__

FIXED_COLUMNS = (
    "path", "image_width", "image_height", "status", "error", "face_index", "box",
    "face_score", "model_version",
)  # fmt: skip


PRESENT_SUFFIX = "_present"  # bool: the operating point's decision (--operating-point)
PROBABILITY_SUFFIX = "_probability"  # float32: calibrated P(present) (--probabilities)


def output_schema(
    attributes: list[str], with_features: bool, metadata: dict[str, str] | None = None,
    decisions: bool = False, probabilities: bool = False,
) -> pa.Schema:
    """The table's schema; ``metadata`` (JSON-encoded values) goes into the Parquet footer.
    ``decisions`` adds a bool ``ATTR_present`` column per attribute, ``probabilities`` a
    float32 ``ATTR_probability`` one, after the score columns (which never change)."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("face_index", pa.int32()),
        pa.field("box", pa.list_(pa.float32(), 4)),  # x1, y1, x2, y2 in the image's pixels
        pa.field("face_score", pa.float32()),
    ]
    fields += [pa.field(name, pa.float32()) for name in attributes]
    if decisions:
        fields += [pa.field(name + PRESENT_SUFFIX, pa.bool_()) for name in attributes]
    if probabilities:
        fields += [pa.field(name + PROBABILITY_SUFFIX, pa.float32()) for name in attributes]
    if with_features:
        fields.append(pa.field("features", pa.list_(pa.float32())))
    fields.append(pa.field("model_version", pa.string()))
    return pa.schema(fields, metadata=metadata)


def table_metadata(attributes: list[str], bundle_config: dict, threshold: float | None,
                   localizer: str, operating_point: dict | None = None) -> dict[str, str]:
    """What a reader needs to interpret the table, stored in every file's footer;
    ``operating_point`` (`heads.points.resolve_point`'s description) under
    ``faceattr_ray.operating_point``."""
    extra = {} if operating_point is None else {
        "faceattr_ray.operating_point": json.dumps(operating_point)}
    return {
        **extra,
        "faceattr_ray.version": __version__,
        "faceattr_ray.attributes": json.dumps(attributes),
        "faceattr_ray.model": json.dumps(
            {
                "version": model_version(bundle_config),
                "hashes": bundle_config.get("files") or {},
                "threshold": threshold,
                "localizer": localizer,
                "framing": None if localizer == "full" else framing_settings(bundle_config),
            }
        ),
    }


# The bundle's "predict" settings that move or drop found boxes (`localizers.framing`): two
# tables from the same weights differ in their boxes when these differ, and the model version
# hashes only the weight files.
FRAMING_KEYS = ("frame_zooms", "frame_shifts_y", "frame_shifts_x", "frame_min_confidence")


def framing_settings(bundle_config: dict) -> dict | None:
    """How the bundle frames found boxes (None: it does not)."""
    predict = bundle_config.get("predict") or {}
    if not predict.get("frame_zooms"):
        return None
    return {key: predict[key] for key in FRAMING_KEYS if key in predict}


def model_version(bundle_config: dict) -> str:
    """A short, stable name for the model: its declared version, else a hash of its files'
    sha256 (``config["files"]``, which `save_bundle` writes)."""
    if bundle_config.get("model_version"):
        return str(bundle_config["model_version"])
    hashes = bundle_config.get("files") or {}
    digest = "".join(v for _, v in sorted(hashes.items()))
    return "sha256:" + hashlib.sha256(digest.encode()).hexdigest()[:12] if digest else "unknown"
