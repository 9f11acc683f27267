"""Where images come from: directories, globs, manifests and object-store URIs -> a path list.

Local inputs stay plain absolute paths; anything with a scheme (``s3://``, ``gs://``,
``file://``, ...) goes through ``pyarrow.fs`` and comes back as a full URI. Manifest entries are
kept even when the file is missing: the annotate job turns them into error rows, so every input
is accounted for.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import os
from collections.abc import Iterator
from typing import BinaryIO

from faceattr_ray.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif",
)  # fmt: skip
MANIFEST_EXTENSIONS: tuple[str, ...] = (".txt", ".csv", ".parquet")
_GLOB_CHARS = "*?["


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` inputs (s3, gs, file, ...), which go through pyarrow.fs."""
    head, sep, _ = path.partition("://")
    return bool(sep) and head.isalnum() and len(head) > 1


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_inputs(inputs: list[str]) -> list[str]:
    """Expand directories (recursively), globs, manifests and URIs into a list of image paths.

    - directory: every file under it with an image extension (case-insensitive), sorted;
    - glob (``*``, ``?``, ``[``): matching files, directories among them expanded;
    - manifest (``.txt`` one path per line, ``.csv``/``.parquet`` with a ``path`` column):
      every entry, in order, existing or not; relative entries are relative to the manifest;
    - any other existing file: itself;
    - ``s3://``, ``gs://``, ``file://`` ...: the same rules through ``pyarrow.fs``.
    Duplicates are dropped (first occurrence kept). A named input that does not exist raises
    ``DataError``.
    """
    out: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        for path in _expand_uri(item) if is_uri(item) else _expand_local(item):
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


class ReadError(DataError):
    """A file that cannot be read; ``reason`` is the short why, without the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: cannot read: {reason}")
        self.path, self.reason = path, reason


def read_bytes(path: str) -> bytes:
    """The bytes of a local file or URI (``is_uri``: s3://, gs://, file:// ... through
    pyarrow.fs); ``ReadError`` naming the path and the reason if it cannot be read."""
    try:
        if is_uri(path):
            fs, inner = _filesystem(path)
            with fs.open_input_stream(inner) as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except DataError:
        raise
    except FileNotFoundError:
        raise ReadError(path, "file not found (or a broken symlink)") from None
    except IsADirectoryError:
        raise ReadError(path, "is a directory") from None
    except PermissionError:
        raise ReadError(path, "permission denied") from None
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ReadError(path, reason) from None


# --- local ---------------------------------------------------------------------------------


def _expand_local(item: str) -> list[str]:
    path = os.path.expanduser(item)
    if os.path.isdir(path):
        return _walk_local(path)
    if os.path.isfile(path):
        if is_manifest(path):
            return [e for batch in manifest_entries(path) for e in batch]
        return [os.path.abspath(path)]
    if any(c in path for c in _GLOB_CHARS):
        found: list[str] = []
        for match in sorted(glob.glob(path, recursive=True)):
            if os.path.isdir(match):
                found.extend(_walk_local(match))
            elif is_image_name(match):
                found.append(os.path.abspath(match))
        return found
    if os.path.islink(path):  # a broken symlink named on purpose: annotate reports it
        return [os.path.abspath(path)]
    raise DataError(f"input not found: {item}")


def _walk_local(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        # Broken symlinks show up in filenames too; they are kept (annotate reports them).
        found.extend(os.path.join(dirpath, n) for n in sorted(filenames) if is_image_name(n))
    return [os.path.abspath(p) for p in found]


# --- manifests -----------------------------------------------------------------------------


def is_manifest(path: str) -> bool:
    return path.lower().endswith(MANIFEST_EXTENSIONS)


def manifest_entries(manifest: str, batch_rows: int = 4096) -> Iterator[list[str]]:
    """The entries of a manifest file (local or URI), ``batch_rows`` at a time, as inputs:
    relative entries made relative to the manifest. A stream: a manifest of millions of rows is
    never held whole (the annotate job reads one this way inside a Ray task)."""
    if is_uri(manifest):
        scheme = manifest.split("://", 1)[0]
        folder = manifest.rsplit("/", 1)[0]

        def resolve(e: str) -> str:
            if is_uri(e) or (scheme == "file" and e.startswith("/")):
                return e
            return f"{folder}/{e}"

        fs, inner = _filesystem(manifest)
        opened = fs.open_input_file(inner)
    else:
        base = os.path.dirname(os.path.abspath(manifest))

        def resolve(e: str) -> str:
            return e if is_uri(e) else os.path.abspath(os.path.join(base, e))

        opened = open(manifest, "rb")  # noqa: SIM115 (closed by the with below, like the URI's)
    with opened as f:
        for batch in iter_manifest(f, manifest, batch_rows):
            yield [resolve(e) for e in batch]


def read_manifest(data: bytes, name: str, column: str = "path") -> list[str]:
    """Paths listed in a manifest's bytes; ``name`` (its file name) picks the format."""
    return [e for batch in iter_manifest(io.BytesIO(data), name, column=column) for e in batch]


def iter_manifest(stream: BinaryIO, name: str, batch_rows: int = 4096,
                  column: str = "path") -> Iterator[list[str]]:
    """Paths listed in a manifest read from a binary file object (seekable for Parquet),
    ``batch_rows`` at a time: ``.parquet`` and ``.csv`` by their ``column``, ``.txt`` one path
    per line (blank lines and '#' comments skipped; inner spaces kept). ``name`` picks the
    format and names the file in errors; an empty entry is a `DataError` naming its line."""
    lower = name.lower()
    if lower.endswith(".parquet"):
        return _parquet_entries(stream, name, batch_rows, column)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    if lower.endswith(".csv"):
        return _utf8(_csv_entries(text, name, batch_rows, column), name)
    return _utf8(_txt_entries(text, batch_rows), name)


def _parquet_entries(stream, name: str, batch_rows: int, column: str) -> Iterator[list[str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(stream)
        names = pf.schema_arrow.names
        if column not in names:
            raise DataError(f"{name}: no {column!r} column (columns: {', '.join(names)})")
        batches = pf.iter_batches(batch_size=batch_rows, columns=[column])
        row = 0
        for batch in batches:
            values = batch.column(0).to_pylist()
            yield _clean_entries(values, name, row, line_numbers=False)
            row += len(values)
    except DataError:
        raise
    except Exception as e:  # pyarrow raises its own ArrowInvalid etc.
        raise DataError(f"{name}: not a readable Parquet file: {e}") from None


def _csv_entries(text, name: str, batch_rows: int, column: str) -> Iterator[list[str]]:
    rows = csv.reader(text)
    header = next(rows, None)
    if not header or column not in [h.strip() for h in header]:
        raise DataError(f"{name}:1: no {column!r} column in the header {header!r}")
    idx = [h.strip() for h in header].index(column)
    values: list = []
    first = 2  # the line of values[0]: entries are numbered as lines of the file
    for row in rows:
        if row:
            values.append(row[idx] if len(row) > idx else "")
        if len(values) == batch_rows:
            yield _clean_entries(values, name, first, line_numbers=True)
            first, values = first + len(values), []
    if values:
        yield _clean_entries(values, name, first, line_numbers=True)


def _txt_entries(text, batch_rows: int) -> Iterator[list[str]]:
    out: list[str] = []
    for line in text:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            out.append(entry)
        if len(out) == batch_rows:
            yield out
            out = []
    if out:
        yield out


def _utf8(entries: Iterator[list[str]], name: str) -> Iterator[list[str]]:
    try:
        yield from entries
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text ({e.reason})") from None


def _clean_entries(values: list, name: str, first: int, line_numbers: bool) -> list[str]:
    out = []
    for i, v in enumerate(values, start=first):
        if v is None or not str(v).strip():
            raise DataError(f"{name}:{i}: empty path" if line_numbers
                            else f"{name} row {i}: empty path")
        out.append(str(v).strip())
    return out


# --- URIs through pyarrow.fs ---------------------------------------------------------------


def _filesystem(uri: str):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # unknown scheme, missing credentials, bad bucket name
        raise DataError(f"{uri}: cannot open filesystem: {e}") from None


def _expand_uri(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    scheme, rest = uri.split("://", 1)
    prefix = f"{scheme}://"  # pyarrow paths are "bucket/key" (s3, gs) or "/abs/path" (file)
    globbed = any(c in rest for c in _GLOB_CHARS)
    # pyarrow has no glob: list from the last fixed folder and match the pattern ourselves.
    base_uri = uri
    if globbed:
        first = min(rest.index(c) for c in _GLOB_CHARS if c in rest)
        base_uri = prefix + rest[: rest.rfind("/", 0, first) + 1]
    fs, base = _filesystem(base_uri)
    try:
        info = fs.get_file_info(base)
        if globbed or info.type == pafs.FileType.Directory:
            if info.type != pafs.FileType.Directory:
                raise DataError(f"input not found: {base_uri}")
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
            names = sorted(i.path for i in infos if i.type == pafs.FileType.File)
            names = [n for n in names if is_image_name(n)]
            if globbed:
                names = [n for n in names if fnmatch.fnmatchcase(n, rest)]
            return [prefix + n for n in names]
        if info.type == pafs.FileType.File:
            if is_manifest(base):
                return [e for batch in manifest_entries(uri) for e in batch]
            return [uri]
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{uri}: cannot list: {e}") from None
    raise DataError(f"input not found: {uri}")
