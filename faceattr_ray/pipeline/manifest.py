"""Annotate's input when it is one manifest: the manifest read as a stream inside a Ray task.

A manifest may list millions of paths. The driver never holds them: it only checks the manifest
once in a streaming pass (`check_manifest`: the column is there, no entry is empty, how many
rows), and one read task streams the entries into the pipeline (`manifest_dataset`), dropping
repeated entries (first kept, as `list_inputs` does) and the paths already in OUTPUT (resume).
What the task holds to do so lives in that worker, not in the driver: one 64-bit hash per
distinct entry (a collision, about 3e-8 for a million distinct paths, would drop an input) and
the done paths of the OUTPUT files that existed when the run was planned.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from faceattr_ray.data.sources import manifest_entries
from faceattr_ray.errors import DataError

# Ray Data's streaming repartition runs as tasks of 1 CPU (not settable in Ray 2.60): on CPUs the
# model actors leave it this much, or on a small machine it waits for them forever.
REPARTITION_CPUS = 1.0


def check_manifest(manifest: str) -> int:
    """The manifest's entry count, read as a stream; `DataError` (one line, naming the file and
    the line) for a missing column, an empty entry, text that is not UTF-8 or a file that cannot
    be read."""
    try:
        return sum(len(batch) for batch in manifest_entries(manifest))
    except OSError as e:
        raise DataError(f"{manifest}: cannot read the manifest: {e.strerror or e}") from None


def pending_entries(manifest: str, done_files: list[str], rows: int,
                    limit: int | None = None) -> Iterator[pa.Table]:
    """Tables of up to ``rows`` paths: the manifest's entries in order, each once, without the
    paths written in ``done_files`` (Parquet files of OUTPUT), at most ``limit`` of them."""
    from faceattr_ray.pipeline.annotate import paths_in

    done = paths_in(done_files)
    seen: set[int] = set()
    left = limit
    for batch in manifest_entries(manifest, rows):
        out = []
        for entry in batch:
            key = hash(entry)
            if key in seen:
                continue
            seen.add(key)
            if entry not in done:
                out.append(entry)
        if left is not None:
            out, left = out[:left], left - min(left, len(out))
        if out:
            yield pa.table({"path": pa.array(out, pa.string())})
        if left == 0:
            return


def manifest_dataset(manifest: str, done_files: list[str], rows: int, limit: int | None = None):
    """A Ray dataset of the pending paths (column ``path``), in blocks of ``rows``.

    One read task streams the manifest; it takes no CPU (it waits on the pipeline most of the
    time, and a CPU held by it could starve a 2-core machine's actors). Ray Data gathers a read
    task's output into large blocks, so the stream is cut back into blocks of ``rows`` paths
    (a streaming repartition, no shuffle): decode tasks then spread over them.
    """
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ManifestDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context=None) -> list[ReadTask]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None,
                                 exec_stats=None)
            return [ReadTask(lambda: pending_entries(manifest, done_files, rows, limit), meta,
                             per_task_row_limit=per_task_row_limit)]

    ds = ray.data.read_datasource(ManifestDatasource(), num_cpus=0)
    return ds.repartition(target_num_rows_per_block=rows)
