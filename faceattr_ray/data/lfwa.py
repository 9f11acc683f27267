"""LFWA (40 CelebA attributes) and LFWA+ (73 attributes) from the CelebA authors' .mat files.

    ROOT/lfw_att_40.mat or lfw_att_73.mat   AttrName (1 x A cell), label (N x A, 0/1),
                                            name (N x 1 cell, "Person\\Person_0001.jpg")
    ROOT/indices_train_test.mat             indices_img_train / indices_img_test (1-based)
    ROOT/lfw/ (or lfw-deepfunneled/ ...)    the LFW images, one folder per person

The released files are MATLAB v7.3 (HDF5, read with h5py); v5 files (scipy.io) read the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from faceattr_ray.errors import DataError

IMAGE_DIRS = ("lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled", "images")
INDEX_FILE = "indices_train_test.mat"
# Accepted key names for each split in INDEX_FILE, first match wins.
SPLIT_KEYS = {
    "train": ("indices_img_train", "indices_train", "train_indices", "train"),
    "test": ("indices_img_test", "indices_test", "test_indices", "test"),
}
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class LFWA:
    root: str
    image_dir: str
    files: list[str]          # relative paths with forward slashes, "Person/Person_0001.jpg"
    paths: list[str]
    names: list[str]          # attribute names
    labels: np.ndarray        # float32 (N, A) 1/0
    identity: np.ndarray      # int (N,): index of the person (folder) in sorted order
    people: list[str]         # person names, identity -> name
    split: str = "all"

    def __len__(self) -> int:
        return len(self.files)


def read_lfwa(root: str, attributes: str = "40", split: str = "all",
              image_dir: str | None = None) -> LFWA:
    """Read LFWA (``attributes="40"``) or LFWA+ (``"73"``), or a .mat path given directly.

    ``split``: train, test (from ``indices_train_test.mat``) or all.
    """
    split = split.lower()
    if split not in ("train", "test", "all"):
        raise DataError(f"unknown LFWA split {split!r}: use train, test or all")
    if attributes.endswith(".mat"):
        mat_path = attributes if os.path.isabs(attributes) else os.path.join(root, attributes)
    else:
        mat_path = os.path.join(root, f"lfw_att_{attributes}.mat")
    mat = read_mat(mat_path, ("AttrName", "label", "name"))
    names = [str(n) for n in _strings(mat["AttrName"], mat_path, "AttrName")]
    files = [n.replace("\\", "/") for n in _strings(mat["name"], mat_path, "name")]
    labels = _matrix(mat["label"], mat_path, "label", rows=len(files), cols=len(names))
    bad = ~np.isin(labels, (-1, 0, 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{mat_path}: label[{r}, {c}] = {labels[r, c]} is not 0 or 1")
    labels = (labels > 0).astype(np.float32)

    if split != "all":
        index_path = os.path.join(root, INDEX_FILE)
        idx = read_split_indices(index_path, split)
        if idx.size and (idx.min() < 1 or idx.max() > len(files)):
            raise DataError(f"{index_path}: {split} index out of range 1..{len(files)} "
                            f"(found {idx.min()}..{idx.max()}; indices are 1-based)")
        keep = idx - 1
        files = [files[i] for i in keep]
        labels = labels[keep]

    people_of = [f.split("/")[0] if "/" in f else os.path.splitext(f)[0].rsplit("_", 1)[0]
                 for f in files]
    people = sorted(set(people_of))
    person_index = {p: i for i, p in enumerate(people)}
    image_dir = _find_image_dir(root, image_dir)
    return LFWA(
        root=root,
        image_dir=image_dir,
        files=files,
        paths=[os.path.join(image_dir, f) for f in files],
        names=names,
        labels=labels,
        identity=np.array([person_index[p] for p in people_of], dtype=np.int64),
        people=people,
        split=split,
    )


def read_split_indices(path: str, split: str) -> np.ndarray:
    """1-based image indices of ``split`` from an indices .mat file (keys in ``SPLIT_KEYS``)."""
    mat = read_mat(path, ())
    for key in SPLIT_KEYS[split]:
        if key in mat:
            values = np.asarray(mat[key]).ravel()
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise DataError(f"{path}: {key} holds non-integer indices")
            return values.astype(np.int64)
    found = ", ".join(sorted(k for k in mat if not k.startswith("_"))) or "none"
    raise DataError(f"{path}: no {split} indices (looked for {', '.join(SPLIT_KEYS[split])}; "
                    f"found {found})")


def read_mat(path: str, required: tuple[str, ...]) -> dict:
    """Variables of a MATLAB file (v5 via scipy.io, v7.3/HDF5 via h5py) as numpy values:
    numeric arrays in MATLAB's (rows, cols) orientation, cell arrays of strings as lists."""
    if not os.path.exists(path):
        raise DataError(f"missing file: {path}")
    out = _read_hdf5_mat(path) if _is_hdf5(path) else _read_v5_mat(path)
    missing = [k for k in required if k not in out]
    if missing:
        found = ", ".join(sorted(k for k in out if not k.startswith("_"))) or "none"
        raise DataError(f"{path}: missing variable(s) {', '.join(missing)} (found {found})")
    return out


def _is_hdf5(path: str) -> bool:
    # MATLAB v7.3 puts a 512-byte text header (userblock) before the HDF5 superblock.
    with open(path, "rb") as f:
        head = f.read(2048 + 8)
    return any(head[o:o + 8] == _HDF5_SIGNATURE for o in (0, 512, 1024, 2048))


def _read_v5_mat(path: str) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(path, squeeze_me=False, chars_as_strings=True)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError ... on bad files
        raise DataError(f"{path}: not a readable MATLAB file: {e}") from None


def _read_hdf5_mat(path: str) -> dict:
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: MATLAB v7.3 file; install h5py to read it") from None
    try:
        with h5py.File(path, "r") as f:
            return {k: _h5_value(f, f[k]) for k in f if not k.startswith("#")
                    and isinstance(f[k], h5py.Dataset)}
    except DataError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/TypeError on damaged files
        raise DataError(f"{path}: not a readable MATLAB v7.3 file: {e}") from None


def _h5_value(f, ds):
    import h5py

    mclass = ds.attrs.get("MATLAB_class", b"")
    mclass = mclass.decode() if isinstance(mclass, bytes) else str(mclass)
    data = ds[()]
    if ds.dtype == h5py.ref_dtype:  # a cell array: each element references another dataset
        return [_h5_value(f, f[ref]) for ref in np.asarray(data).T.ravel()]
    if mclass == "char":  # uint16 code units, stored transposed
        return "".join(chr(c) for c in np.asarray(data).T.ravel() if c)
    arr = np.asarray(data)
    return arr.T if arr.ndim >= 2 else arr  # HDF5 stores MATLAB's column-major arrays reversed


def _strings(value, path: str, key: str) -> list[str]:
    """A MATLAB cell array of strings (as loaded by either reader) -> list of str."""
    if isinstance(value, str):
        return [value]
    items = value if isinstance(value, list) else list(np.asarray(value, dtype=object).ravel())
    out = []
    for item in items:
        while isinstance(item, np.ndarray) and item.dtype == object and item.size == 1:
            item = item.ravel()[0]  # scipy nests each cell in a 1x1 array
        if isinstance(item, np.ndarray):
            if item.dtype.kind == "U":
                item = "".join(item.ravel().tolist())
            elif item.dtype.kind in "ui" and item.size:
                item = "".join(chr(c) for c in item.ravel() if c)
        if not isinstance(item, str):
            raise DataError(f"{path}: {key} must be a cell array of strings, "
                            f"found an element of type {type(item).__name__}")
        out.append(item)
    return out


def _matrix(value, path: str, key: str, rows: int, cols: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} must be a numeric matrix")
    if arr.shape == (cols, rows) and rows != cols:  # written the other way round
        arr = arr.T
    if arr.shape != (rows, cols):
        raise DataError(f"{path}: {key} has shape {arr.shape}, expected ({rows}, {cols}) "
                        "(images x attributes)")
    return arr


def _find_image_dir(root: str, image_dir: str | None) -> str:
    if image_dir is not None:
        return image_dir if os.path.isabs(image_dir) else os.path.join(root, image_dir)
    for name in IMAGE_DIRS:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return root  # images may sit in person folders right under ROOT
