"""Attribute tables (CSV/Parquet: a path column + one column per attribute) and image folders.

An attribute table is how a new attribute set comes in (LFWA+-style retraining): values may be
-1/1, 0/1, booleans or words, blanks mean unknown; everything becomes float32 1/0/NaN through
``attributes.normalize_labels``. An image folder (one sub-folder per class) feeds LNet+
pre-training on object categories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from faceattr_ray.attributes import normalize_labels
from faceattr_ray.data.sources import is_image_name, is_uri, read_bytes
from faceattr_ray.errors import DataError


@dataclass
class AttributeTable:
    paths: list[str]
    names: list[str]
    labels: np.ndarray  # float32 (N, A): 1 present, 0 absent, NaN unknown

    def __len__(self) -> int:
        return len(self.paths)


def read_attribute_table(path: str, path_column: str = "path",
                         attributes: list[str] | None = None) -> AttributeTable:
    """Read a CSV or Parquet attribute table. Every column except ``path_column`` is an
    attribute unless ``attributes`` picks a subset. Paths are returned as written."""
    table = _read_arrow_table(path, path_column)
    if path_column not in table.column_names:
        raise DataError(f"{path}: no {path_column!r} column "
                        f"(columns: {', '.join(table.column_names)})")
    names = [c for c in table.column_names if c != path_column]
    if attributes is not None:
        missing = [a for a in attributes if a not in names]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)}")
        names = list(attributes)
    if not names:
        raise DataError(f"{path}: no attribute columns besides {path_column!r}")
    csv_like = not path.lower().endswith(".parquet")
    # CSV line of data row i (header is line 1); Parquet rows are reported by index.
    def where(i: int) -> str:
        return f"{path}:{i + 2}" if csv_like else f"{path} row {i}"

    paths = table.column(path_column).to_pylist()
    for i, p in enumerate(paths):
        if p is None or not str(p).strip():
            raise DataError(f"{where(i)}: empty {path_column!r}")
    labels = np.empty((len(paths), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        values = table.column(name).to_pylist()
        try:
            labels[:, j] = normalize_labels(values, name)
        except ValueError as e:
            row = next(i for i, v in enumerate(values) if _bad(v, name))
            raise DataError(f"{where(row)}: {e}") from None
    return AttributeTable(paths=[str(p) for p in paths], names=names, labels=labels)


def _bad(value, name: str) -> bool:
    try:
        normalize_labels([value], name)
    except ValueError:
        return True
    return False


def _read_arrow_table(path: str, path_column: str):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    data = read_bytes(path) if is_uri(path) else None
    if data is None and not os.path.isfile(path):
        raise DataError(f"missing file: {path}")
    source = pa.BufferReader(data) if data is not None else path
    try:
        if path.lower().endswith(".parquet"):
            return pq.read_table(source)
        if not path.lower().endswith((".csv", ".tsv", ".txt")):
            raise DataError(f"{path}: attribute tables are .csv, .tsv or .parquet")
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
        # Paths stay text even if they look like numbers; "yes"/"no" etc. stay text too and
        # are handled by normalize_labels.
        convert = pacsv.ConvertOptions(column_types={path_column: pa.string()},
                                       strings_can_be_null=True)
        return pacsv.read_csv(source, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                              convert_options=convert)
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError) as e:
        reason = str(e).splitlines()[0]
        raise DataError(f"{path}: cannot read table: {reason}") from None


@dataclass
class ImageFolder:
    root: str
    classes: list[str]     # sorted sub-folder names; class index = position
    paths: list[str]
    targets: np.ndarray    # int64 (N,)

    def __len__(self) -> int:
        return len(self.paths)


def read_image_folder(root: str) -> ImageFolder:
    """One sub-folder per class (searched recursively), like torchvision's ImageFolder:
    classes sorted by name, image extensions matched case-insensitively."""
    if not os.path.isdir(root):
        raise DataError(f"image folder not found: {root}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(f"{root}: no class sub-folders")
    paths: list[str] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        # sorted(os.walk(...)) is torchvision's order, so indices agree with its ImageFolder.
        for dirpath, _, filenames in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for f in sorted(filenames):
                if is_image_name(f):
                    paths.append(os.path.join(dirpath, f))
                    targets.append(index)
    if not paths:
        raise DataError(f"{root}: no images in the class folders")
    return ImageFolder(root=root, classes=classes, paths=paths,
                       targets=np.asarray(targets, dtype=np.int64))
