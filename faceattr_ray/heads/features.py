"""Feature tables: stored ANet features in Parquet, joined to a label table, ready to fit heads.

FEATURES is a Parquet file or folder (the annotate job's output with ``--features``, or
``extract-features``) with, per row:

- ``path`` (string, required): the image, as the join key with the label table;
- ``features``: list<float32> or fixed_size_list<float32>[F], the face's ANet FC vector
  averaged over its patches;
- ``patch_features`` (optional): the P patch vectors, either list<list<float32>> (P lists of F)
  or a flat list<float32> of P*F values, patch-major, with an int ``patches`` column giving P.
  When present it is used (the paper trains on every patch), unless ``--mean-features``;
- ``status`` (optional): only "ok" rows are used; ``face_index`` (optional): only the dominant
  face (0 or null). Rows with null features are skipped. F (and P) must be the same in every row.

TABLE is read by ``data.read_attribute_table`` (CSV/TSV/Parquet, a ``path`` column and one
column per attribute; -1/1, 0/1, booleans, words, blanks = unknown).

Join: a features path equal to a table path matches; the paths left over on both sides then
match by file name (basename) where that name is unique on both sides, so "000001.jpg" in a table
finds "/data/celeba/000001.jpg". A path appearing in more than one usable features row is dropped
(counted); a path appearing twice in the table is an error.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import numpy as np

from faceattr_ray.errors import DataError
from faceattr_ray.heads.model import TEST, TRAIN, VAL

VAL_FRACTION = 0.2  # of the training images, held out to choose C
RAY_BATCH_ROWS = 4096  # feature rows per Ray Data batch, so per heads block


@dataclass
class FeatureLayout:
    column: str  # "features" or "patch_features"
    nested: bool  # list<list<float>> rather than a flat list
    patches: int
    dim: int

    @property
    def columns(self) -> list[str]:
        return [self.column] + (["patches"] if self.column == "patch_features" and not self.nested
                                else [])


def open_features(path: str):
    import pyarrow.dataset as pads

    if not (os.path.exists(path) or "://" in path):
        raise DataError(f"missing features: {path}")
    try:
        dataset = pads.dataset(path, format="parquet")
    except Exception as e:  # pyarrow raises several types for a non-Parquet input
        raise DataError(f"{path}: cannot read as Parquet ({str(e).splitlines()[0]})") from None
    if "path" not in dataset.schema.names:
        raise DataError(f"{path}: no 'path' column (columns: {', '.join(dataset.schema.names)})")
    return dataset


def feature_layout(dataset, path: str, mean_only: bool = False) -> FeatureLayout:
    """Which column holds the features, and P and F, read from the first row that has them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = dataset.schema.names
    column = "patch_features" if "patch_features" in names and not mean_only else "features"
    if column not in names:
        raise DataError(f"{path}: no 'features' column (written by `annotate --features` or "
                        f"`extract-features`)")
    kind = dataset.schema.field(column).type
    nested = pa.types.is_list(kind.value_type) or pa.types.is_fixed_size_list(kind.value_type) \
        if hasattr(kind, "value_type") else False
    if column == "patch_features" and not nested and "patches" not in names:
        raise DataError(f"{path}: a flat 'patch_features' column needs a 'patches' column")
    layout = FeatureLayout(column, nested, 1, 0)
    first = dataset.scanner(columns=layout.columns, filter=pc.field(column).is_valid()).head(1)
    if first.num_rows == 0:
        raise DataError(f"{path}: no row has {column!r}")
    value = first.column(column)[0].as_py()
    if nested:
        layout.patches, layout.dim = len(value), len(value[0])
    elif column == "patch_features":
        layout.patches = int(first.column("patches")[0].as_py())
        if layout.patches <= 0 or len(value) % layout.patches:
            raise DataError(f"{path}: {len(value)} patch values do not split into "
                            f"{layout.patches} patches")
        layout.dim = len(value) // layout.patches
    else:
        layout.dim = len(value)
    return layout


def usable_paths(dataset) -> np.ndarray:
    """The path of every row that can be used: status ok and the dominant face."""
    import pyarrow.compute as pc

    names = dataset.schema.names
    keep = pc.scalar(True)
    if "status" in names:
        keep = pc.field("status") == "ok"
    if "face_index" in names:
        keep = keep & (pc.field("face_index").is_null() | (pc.field("face_index") <= 0))
    paths = dataset.to_table(columns=["path"], filter=keep).column("path").to_pylist()
    return np.asarray(paths, dtype=object)


def join_features_labels(dataset, label_paths: list[str], features_name: str, labels_name: str
                         ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Match feature rows to table rows. Returns the matched feature paths as sorted utf-8 bytes
    keys, the table row of each key, and the counts."""
    feature_paths = usable_paths(dataset)
    uniq, counts = np.unique(feature_paths.astype(str), return_counts=True)
    dup = uniq[counts > 1]
    single = [str(p) for p in uniq[counts == 1]]
    table_index: dict[str, int] = {}
    for i, p in enumerate(label_paths):
        if p in table_index:
            raise DataError(f"{labels_name}: path {p!r} appears twice")
        table_index[p] = i
    matched = {p: table_index[p] for p in single if p in table_index}
    left_f = [p for p in single if p not in matched]
    used = set(matched.values())
    left_l = [i for i in range(len(label_paths)) if i not in used]
    by_name_f = _unique_by_basename(left_f)
    by_name_l = _unique_by_basename([label_paths[i] for i in left_l])
    n_basename = 0
    for name, p in by_name_f.items():
        if name in by_name_l:
            matched[p] = table_index[by_name_l[name]]
            n_basename += 1
    if not matched:
        raise DataError(f"no path of {features_name} matches a path of {labels_name} "
                        f"(e.g. {single[:1]} vs {label_paths[:1]})")
    keys = sorted(matched)
    report = {
        "feature_rows_usable": int(len(feature_paths)),
        "duplicate_paths_dropped": int(len(dup)),
        "label_rows": len(label_paths),
        "matched": len(keys),
        "matched_by_basename": n_basename,
        "unmatched_features": len(single) - len(keys),
        "unmatched_labels": len(label_paths) - len(keys),
    }
    return (np.array([k.encode() for k in keys]), np.array([matched[k] for k in keys]), report)


def _unique_by_basename(paths: list[str]) -> dict[str, str]:
    names: dict[str, list[str]] = {}
    for p in paths:
        names.setdefault(posixpath.basename(p.replace("\\", "/")), []).append(p)
    return {n: ps[0] for n, ps in names.items() if len(ps) == 1}


def assign_split(n: int, protocol: str, needs_val: bool, seed: int) -> np.ndarray:
    """TRAIN/VAL/TEST per matched image (in key order), drawn with ``seed``.

    holdout: everything trains, VAL_FRACTION held out to choose C when needed (then refit).
    lfwa-plus: one third trains (paper section 3, LFWA+), the other two thirds are the test.
    """
    order = np.random.default_rng(seed).permutation(n)
    split = np.full(n, TRAIN, dtype=np.int8)
    n_train = n
    if protocol == "lfwa-plus":
        n_train = int(round(n / 3))
        split[order[n_train:]] = TEST
    if needs_val:
        n_val = max(1, int(round(VAL_FRACTION * n_train)))
        if n_val >= n_train:
            raise DataError(f"{n_train} training images are too few to hold out validation")
        split[order[:n_val]] = VAL
    return split


def rows_to_block(table, lookup: dict, layout: FeatureLayout) -> dict[str, np.ndarray]:
    """A pyarrow table of feature rows -> a heads block {"x", "y", "split"} of its rows that
    are usable and joined (see heads.RayBlocks)."""
    import pyarrow.compute as pc

    keys = lookup["keys"]
    keep = pc.is_valid(table.column(layout.column)).to_numpy(zero_copy_only=False)
    if "status" in table.column_names:
        keep &= pc.fill_null(pc.equal(table.column("status"), "ok"), False).to_numpy(
            zero_copy_only=False)
    if "face_index" in table.column_names:
        keep &= pc.fill_null(pc.less_equal(table.column("face_index"), 0), True).to_numpy(
            zero_copy_only=False)
    paths = np.array([(p or "").encode() for p in table.column("path").to_pylist()])
    pos = np.clip(np.searchsorted(keys, paths), 0, max(len(keys) - 1, 0))
    keep &= keys[pos] == paths if len(keys) else False
    rows = table.filter(keep)
    x = _feature_matrix(rows.column(layout.column), layout)
    return {"x": x, "y": lookup["y"][pos[keep]], "split": lookup["split"][pos[keep]]}


def _feature_matrix(column, layout: FeatureLayout) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    width = layout.patches * layout.dim
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, width), np.float32)
    flat = pc.list_flatten(arr)
    if layout.nested:
        inner = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
        if np.any(inner != layout.dim):
            raise DataError(f"patch vectors of {int(inner[inner != layout.dim][0])} values, "
                            f"expected {layout.dim} in every row")
        flat = pc.list_flatten(flat)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    per_row = width if not layout.nested else layout.patches
    if np.any(lengths != per_row):
        bad = int(lengths[lengths != per_row][0])
        raise DataError(f"a row's {layout.column} has {bad} values, expected {per_row} "
                        f"(feature dimension {layout.dim}) in every row")
    values = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(arr), width)


def read_feature_arrays(dataset, layout: FeatureLayout, lookup: dict
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All joined rows in memory (the liblinear solver): x (n, P, F), y (n, A), split (n,)."""
    import pyarrow as pa

    parts = [rows_to_block(pa.Table.from_batches([b]), lookup, layout)
             for b in dataset.to_batches(columns=_read_columns(dataset, layout))]
    parts = [p for p in parts if len(p["x"])] or [rows_to_block(
        dataset.head(0, columns=_read_columns(dataset, layout)), lookup, layout)]
    x = np.concatenate([p["x"] for p in parts]).reshape(-1, layout.patches, layout.dim)
    return x, np.concatenate([p["y"] for p in parts]), np.concatenate([p["split"] for p in parts])


def _read_columns(dataset, layout: FeatureLayout) -> list[str]:
    optional = [c for c in ("status", "face_index") if c in dataset.schema.names]
    return ["path", *layout.columns, *optional]


def ray_feature_blocks(path: str, layout: FeatureLayout, lookup: dict):
    """Stream the Parquet rows through Ray Data into heads blocks held in Ray's object store
    (the driver keeps only references). Returns (RayBlocks, images)."""
    import ray

    from faceattr_ray.heads.solvers import RayBlocks

    dataset = open_features(path)
    lookup_ref = ray.put(lookup)
    ds = ray.data.read_parquet(path, columns=_read_columns(dataset, layout)).map_batches(
        _ray_rows_to_block, fn_kwargs={"lookup": lookup_ref, "layout": layout},
        batch_format="pyarrow", batch_size=RAY_BATCH_ROWS)
    ds = ds.materialize()
    refs = ds.to_numpy_refs()
    return RayBlocks(refs, layout.patches, layout.dim, lookup["y"].shape[1]), ds.count()


def _ray_rows_to_block(table, lookup, layout):
    import ray

    if isinstance(lookup, ray.ObjectRef):
        lookup = ray.get(lookup)
    return rows_to_block(table, lookup, layout)
