"""`faceattr-ray annotate`: images in, one Parquet attribute table out, every input accounted for.

    paths ──> read + decode (CPU tasks) ──> Predictor (actor pool, GPU or CPU) ──> write_parquet

Why the pipeline starts from a list of paths rather than `read_binary_files`: a read task of
`read_binary_files` fails as a whole on one unreadable file (a broken symlink, a file that vanished,
a manifest entry that never existed), and this job owes a row to every input. Reading the bytes
inside the decode task lets each failure become an error row.

Resume is our own and simple: every output file holds whole images, so the paths already in
OUTPUT are done; a rerun skips them. A file cut short by a kill does not parse and is removed, so
its images are done again. No path is written twice and none is lost.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from faceattr_ray.errors import DataError
from faceattr_ray.pipeline.schema import (
    PRESENT_SUFFIX,
    PROBABILITY_SUFFIX,
    model_version,
    output_schema,
    table_metadata,
)
from faceattr_ray.runtime import DECODE_CPUS

# The working size: decoded images are shrunk to this longest side before they travel to the
# model actors. The bundled pyramid localizer (canonical 37.5 px, min_face 20, max_side 1600)
# reads no level above 1600 px, so on a 1024 px image its finest level (x1.33) finds faces
# down to 28 px of it; more pixels would only cost memory and decoding.
WORK_MAX_SIDE = 1024
# A JPEG is decoded straight from the DCT at 1/2, 1/4 or 1/8 of its size when that leaves at
# least this long side (issue 20), and a draft within [WORK_MIN_SIDE, WORK_MAX_SIDE] is read as
# decoded. Work images of 853-1206 px all get the same finest pyramid level (same ladder of
# scales), so a 4000x3000 photo read at 1000x750 finds faces of 113 of its pixels instead of 110
# at 1024; what it gains is a decode about 5x cheaper than a full one.
WORK_MIN_SIDE = 960
PLACEHOLDER = np.zeros((1, 1, 3), np.uint8)  # the pixels of an error row


# --- reading and decoding (CPU tasks) --------------------------------------------------------


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def decode_batch(batch: dict[str, np.ndarray], max_pixels: int | None) -> dict[str, list]:
    """Read and decode each path; a failure becomes an error row, never an exception.

    Pixels travel as raw bytes plus their shape: Arrow stores a bytes column with one copy,
    while a column of differently shaped arrays costs ~10 ms an image to convert.
    """
    from faceattr_ray.data.decode import decode_reduced
    from faceattr_ray.data.sources import read_bytes

    out: dict[str, list] = {k: [] for k in
                            ("path", "status", "error", "image_width", "image_height", "scale",
                             "pixels", "work_height", "work_width")}  # fmt: skip
    for path in batch["path"]:
        path = str(path)
        try:
            work, (w, h) = decode_reduced(read_bytes(path), WORK_MAX_SIDE, WORK_MIN_SIDE,
                                          max_pixels=max_pixels)
            # The work image is round(side * scale) on each side: boxes go back by the width's.
            scale, status, error = work.shape[1] / w, "ok", ""
        except Exception as e:  # any failure of one file is that file's row, not the job's
            work, scale, status, error, (h, w) = PLACEHOLDER, 1.0, "error", _reason(e), (0, 0)
        out["path"].append(path)
        out["status"].append(status)
        out["error"].append(error)
        out["image_width"].append(w)
        out["image_height"].append(h)
        out["scale"].append(scale)
        out["pixels"].append(np.ascontiguousarray(work).tobytes())
        out["work_height"].append(work.shape[0])
        out["work_width"].append(work.shape[1])
    return out


def batch_images(batch: dict[str, np.ndarray], rows: list[int]) -> list[np.ndarray]:
    """The decoded images of ``rows`` of a batch that `decode_batch` produced."""
    return [
        np.frombuffer(batch["pixels"][i], np.uint8).reshape(
            int(batch["work_height"][i]), int(batch["work_width"][i]), 3)
        for i in rows
    ]


def _reason(e: Exception) -> str:
    """The error column: why, without the path (the row has it)."""
    return getattr(e, "reason", None) or str(e) or type(e).__name__


# --- the model stage (actor pools) -----------------------------------------------------------


_this_thread = threading.local()


def use_threads_here(threads: int | None) -> None:
    """torch's thread count, set in the calling thread (once per thread).

    OpenMP keeps the count per thread, and Ray Data runs an actor's batches in a thread other
    than the one that ran its constructor. There Ray's OMP_NUM_THREADS (1 for a 1.5-CPU
    actor) ruled oneDNN's convolutions, which ran on one core of two (README, results: Speed
    and scale, twelfth round)."""
    import torch

    if threads and getattr(_this_thread, "threads", None) != threads:
        torch.set_num_threads(threads)
        _this_thread.threads = threads


def _load_predictor(model: str, localizer: str, all_faces: bool, with_features: bool,
                    threads: int | None, parts: str, precision: str = "auto"):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.runtime import pick_device

    use_threads_here(threads)
    device = pick_device()
    bundle = load_bundle(model, device=str(device))
    predictor = Predictor(bundle, device, localizer, all_faces, with_features, parts=parts,
                          precision=precision)
    return bundle, predictor


def table_schema(bundle, localizer: str, with_features: bool, point: str | None,
                 probabilities: bool) -> tuple[pa.Schema, np.ndarray | None, object | None]:
    """The output schema of a job, the thresholds of its operating point (None: no decision
    columns) and the bundle's calibration (`OperatingPoints`, None: no probability column)."""
    from faceattr_ray.heads.points import OperatingPoints, resolve_point

    attributes = list(bundle.attributes)
    thresholds, described, calibration = None, None, None
    if point is not None:
        thresholds, described = resolve_point(bundle.config, attributes, point)
    if probabilities:
        calibration = OperatingPoints.from_config(bundle.config, attributes)
        if calibration is None:
            raise DataError("--probabilities: this bundle stores no calibration; "
                            "`faceattr-ray calibrate-points` adds it")
    schema = output_schema(
        attributes, with_features,
        table_metadata(attributes, bundle.config, bundle.threshold, localizer, described),
        decisions=thresholds is not None, probabilities=probabilities)
    return schema, thresholds, calibration


class _TableRows:
    """Turns per-image faces into rows of the output table (one per face, one per faceless image)."""

    def __init__(self, bundle, localizer: str, with_features: bool, point: str | None = None,
                 probabilities: bool = False) -> None:
        self.attributes = list(bundle.attributes)
        self.with_features = with_features
        self.version = model_version(bundle.config)
        self.schema, self.thresholds, self.calibration = table_schema(
            bundle, localizer, with_features, point, probabilities)
        self.present = [a + PRESENT_SUFFIX for a in self.attributes]
        self.probability = [a + PROBABILITY_SUFFIX for a in self.attributes]

    def table(self, batch: dict[str, np.ndarray], results: dict) -> pa.Table:
        """``results`` maps a batch row to its `ImageResult`; rows not in it have no face."""
        rows: list[dict] = []
        for i, path in enumerate(batch["path"]):
            base = {
                "path": str(path),
                "image_width": int(batch["image_width"][i]),
                "image_height": int(batch["image_height"][i]),
                "status": str(batch["status"][i]),
                "error": str(batch["error"][i]) or None,
                "model_version": self.version,
            }
            faces = results[i].faces if i in results else []
            if base["status"] == "ok" and not faces:
                base["status"] = "no_face"
            if not faces:
                rows.append(base)
                continue
            scale = float(batch["scale"][i])
            for k, face in enumerate(faces):
                row = dict(base, face_index=k, face_score=face.score,
                           box=[v / scale for v in face.box])
                row.update(zip(self.attributes, face.attributes.tolist(), strict=True))
                if self.thresholds is not None:  # NaN threshold (unreachable): never present
                    present = np.nan_to_num(self.thresholds, nan=np.inf) < face.attributes
                    row.update(zip(self.present, present.tolist(), strict=True))
                if self.calibration is not None:
                    p = self.calibration.probabilities(face.attributes[None])[0]
                    row.update(zip(self.probability, p.tolist(), strict=True))
                if self.with_features:
                    row["features"] = face.features.tolist()
                rows.append(row)
        return pa.Table.from_pylist(rows, schema=self.schema)


class BatchClock:
    """Appends ``time images`` (wall-clock seconds, the batch's inputs) to a file as each batch
    leaves the last model actor: the pipeline's steady state, measured where the work is done
    (bench/annotate.py). Output files cannot tell it: Ray Data writes them in a burst at the
    end. One short append per batch, so actors of one pool can share the file."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def tick(self, images: int) -> None:
        if self.path is None:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{time.time():.6f} {images}\n".encode())
        finally:
            os.close(fd)


def read_batch_clock(path: str) -> list[tuple[float, int]]:
    """The (time, images) lines a `BatchClock` wrote, in time order; [] when there are none."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return sorted((float(t), int(n)) for t, n in (line.split() for line in f if line.strip()))


class _TableActor:
    """What a pipeline's last model stage shares: its ``results`` become table rows, and the
    batch's leaving is timed (`BatchClock`)."""

    rows: _TableRows
    clock: BatchClock
    threads: int | None = None

    def results(self, batch: dict[str, np.ndarray]) -> dict:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        use_threads_here(self.threads)
        table = self.rows.table(batch, self.results(batch))
        self.clock.tick(len(batch["path"]))
        return table


def _ok_rows(batch: dict[str, np.ndarray]) -> list[int]:
    return [i for i, s in enumerate(batch["status"]) if s == "ok"]


class AnnotateActor(_TableActor):
    """Holds the whole cascade (LNets, ANet, heads) and turns decoded images into table rows."""

    def __init__(self, model: str, localizer: str, all_faces: bool, with_features: bool,
                 threads: int | None = None, point: str | None = None,
                 probabilities: bool = False, precision: str = "auto",
                 timing_log: str | None = None) -> None:
        self.threads = threads
        bundle, self.predictor = _load_predictor(model, localizer, all_faces, with_features,
                                                 threads, parts="all", precision=precision)
        self.rows = _TableRows(bundle, localizer, with_features, point, probabilities)
        self.clock = BatchClock(timing_log)

    def results(self, batch: dict[str, np.ndarray]) -> dict:
        """{row: `ImageResult`} of the batch's decoded images (sizes: the working size)."""
        ok = _ok_rows(batch)
        return dict(zip(ok, self.predictor.predict(batch_images(batch, ok)), strict=True))


# Split pools (`--stages split`): LNets in one pool, ANet + heads in another. Between them travel
# the face boxes and the face crops at ANet's input size, not the decoded images.


class LocalizeActor:
    """Pool 1 of the split pipeline: localizes faces, cuts their ANet face crops."""

    def __init__(self, model: str, localizer: str, all_faces: bool,
                 threads: int | None = None, precision: str = "auto") -> None:
        self.threads = threads
        _, self.predictor = _load_predictor(model, localizer, all_faces, False, threads,
                                            parts="localize", precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        use_threads_here(self.threads)
        ok = _ok_rows(batch)
        images = dict(zip(ok, batch_images(batch, ok), strict=True))
        detections = dict(zip(ok, self.predictor.localize(list(images.values())), strict=True))
        # Bytes, like the pixels: Arrow stores them with one copy whatever the face count.
        out = {k: batch[k] for k in ("path", "status", "error", "image_width", "image_height",
                                     "scale", "work_height", "work_width")}  # fmt: skip
        out["face_boxes"], out["face_scores"], out["crops"] = [], [], []
        for i in range(len(batch["path"])):
            dets = detections.get(i, [])
            out["face_boxes"].append(np.array([d.box for d in dets], np.float32).tobytes())
            out["face_scores"].append(np.array([d.score for d in dets], np.float32).tobytes())
            crops = self.predictor.face_crops([images[i]], [dets]) if dets else None
            out["crops"].append(b"" if crops is None else crops.tobytes())
        out["crop_side"] = [self.predictor.crop_side] * len(batch["path"])
        return out


class DescribeActor(_TableActor):
    """Pool 2 of the split pipeline: ANet one pass + heads over the face crops, then table rows."""

    def __init__(self, model: str, localizer: str, with_features: bool,
                 threads: int | None = None, point: str | None = None,
                 probabilities: bool = False, precision: str = "auto",
                 timing_log: str | None = None) -> None:
        self.threads = threads
        bundle, self.predictor = _load_predictor(model, localizer, False, with_features, threads,
                                                 parts="describe", precision=precision)
        self.rows = _TableRows(bundle, localizer, with_features, point, probabilities)
        self.clock = BatchClock(timing_log)

    def results(self, batch: dict[str, np.ndarray]) -> dict:
        """{row: `ImageResult`} as `AnnotateActor.results` gives them, from pool 1's boxes and
        crops (sizes: the working size that pool 1 localized at)."""
        from faceattr_ray.localizers import Detection
        from faceattr_ray.predictor import assemble_results

        ok = _ok_rows(batch)
        side = int(batch["crop_side"][0]) if len(batch["path"]) else 0
        detections = []
        for i in ok:
            boxes = np.frombuffer(batch["face_boxes"][i], np.float32).reshape(-1, 4)
            scores = np.frombuffer(batch["face_scores"][i], np.float32)
            detections.append([Detection(tuple(map(float, b)), float(s))
                               for b, s in zip(boxes, scores, strict=True)])
        crops = np.frombuffer(b"".join(batch["crops"][i] for i in ok), np.uint8)
        scores, features = self.predictor.describe(crops.reshape(-1, side, side, 3))
        shapes = [(int(batch["work_height"][i]), int(batch["work_width"][i])) for i in ok]
        return dict(zip(ok, assemble_results(shapes, detections, scores, features), strict=True))


# --- resume ----------------------------------------------------------------------------------


def result_files(output: str) -> list[str]:
    """OUTPUT's Parquet files (full paths or URIs); files that do not parse (cut short by a
    kill) are removed, so their images are done again. Only footers are read."""
    fs, root = _filesystem(output)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    prefix = output.split("://", 1)[0] + "://" if "://" in output else ""
    files = []
    for f in fs.get_file_info(pafs.FileSelector(root, recursive=False)):
        if not f.path.endswith(".parquet"):
            continue
        try:
            with fs.open_input_file(f.path) as stream:
                pq.read_metadata(stream)
            files.append(prefix + f.path)
        except Exception:  # cut short by a kill: its images are simply done again
            fs.delete_file(f.path)
    return sorted(files)


def completed_paths(output: str) -> set[str]:
    """Paths already in OUTPUT's Parquet files; files that do not parse are removed."""
    return paths_in(result_files(output))


def paths_in(files: list[str]) -> set[str]:
    """The paths written in these result files."""
    done: set[str] = set()
    for path in files:
        fs, inner = _filesystem(path)
        done.update(pq.read_table(inner, columns=["path"], filesystem=fs)["path"].to_pylist())
    return done


# --- the job ---------------------------------------------------------------------------------


@dataclass
class AnnotateOptions:
    features: bool = False
    all_faces: bool = False
    localizer: str = "lnet"
    batch_size: int = 32
    num_gpus: float | None = None
    actors: int | None = None
    decode_cpus: float = DECODE_CPUS
    max_pixels: int | None = None
    resume: str = "auto"
    stages: str = "one"  # "one": one pool holds every network; "split": LNets | ANet + heads
    operating_point: str | None = None  # decision columns (heads/points.py); None: scores only
    probabilities: bool = False  # calibrated probability columns (the bundle's Platt fit)
    limit: int | None = None  # annotate at most this many of the pending inputs
    precision: str = "auto"  # the networks' arithmetic (`Predictor`): auto, fp32, bf16, fp16
    timing_log: str | None = None  # a local file: each batch's leave time (`BatchClock`)

    def check(self) -> None:
        """One-line errors, named like the command's flags, for values the job cannot run."""
        from faceattr_ray.localizers import LOCALIZERS
        from faceattr_ray.runtime import PRECISIONS

        low = [("--batch-size", self.batch_size, 1), ("--actors", self.actors, 1),
               ("--max-pixels", self.max_pixels, 1), ("--num-gpus", self.num_gpus, 0),
               ("--limit", self.limit, 1)]
        for flag, value, minimum in low:
            if value is not None and not value >= minimum:
                raise DataError(f"{flag} must be at least {minimum}, got {value}")
        if not self.decode_cpus > 0:
            raise DataError(f"--decode-cpus must be above 0, got {self.decode_cpus}")
        for flag, value, allowed in (("--localizer", self.localizer, LOCALIZERS),
                                     ("--resume", self.resume, ("auto", "never")),
                                     ("--stages", self.stages, ("one", "split")),
                                     ("--precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise DataError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
        if self.operating_point is not None:
            from faceattr_ray.heads.points import parse_point

            self.operating_point = parse_point(self.operating_point)


def _actor_resources(opts: AnnotateOptions, reserved: float = 0.0) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor) of one pool, from the options and the cluster.

    With split pools each pool gets ``actors`` actors and half of what one pool would have, so
    ``--num-gpus 1 --actors N`` asks for N GPUs in both modes. ``reserved`` CPUs are left to
    other stages (a streamed manifest's repartition task).
    """
    import ray

    total = ray.cluster_resources()
    gpus = total.get("GPU", 0.0)
    per_gpu = opts.num_gpus if opts.num_gpus is not None else (1.0 if gpus else 0.0)
    if opts.actors:
        actors = opts.actors
    elif per_gpu > 0:
        actors = max(1, int(gpus // per_gpu))
    else:
        actors = 1
    pools = 2 if opts.stages == "split" else 1
    # On CPU the actors are where the work is: give them what decoding leaves over.
    if per_gpu > 0:
        cpus = 1.0 / pools
    else:
        cpus = max(0.5, (total.get("CPU", 1.0) - opts.decode_cpus - reserved) / (actors * pools))
    return actors, per_gpu / pools, cpus


OUTPUT_FILES = ("_SUMMARY.json",)  # besides *.parquet: what an output folder may hold


def check_output(output: str) -> None:
    """Refuse an OUTPUT that is not a folder of this job's results: a file, or a folder holding
    anything but Parquet files and ``_SUMMARY.json`` (a photo folder, the input folder).
    Nothing is read, deleted or written."""
    fs, root = _filesystem(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise DataError(f"{output}: --output must be a folder, and this is a file")
    foreign = sorted(
        f.base_name for f in fs.get_file_info(pafs.FileSelector(root, recursive=False))
        if f.type != pafs.FileType.File
        or not (f.base_name.endswith(".parquet") or f.base_name in OUTPUT_FILES))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise DataError(f"{output}: --output holds files that are not annotate results "
                        f"({shown}); give a new or empty folder")


@dataclass
class AnnotatePlan:
    """What a run will do, decided before Ray starts (`plan_annotate`)."""

    inputs: int  # distinct input paths (a streamed manifest: its entries)
    pending: list[str] | None  # those not yet in OUTPUT; None: streamed from ``manifest``
    model: str
    output: str
    opts: AnnotateOptions
    schema: pa.Schema
    manifest: str | None = None  # one manifest, read as a stream (`pipeline.manifest`)
    done_files: list[str] = field(default_factory=list)  # OUTPUT's files before the run


def _streamed_manifest(inputs: list[str]) -> str | None:
    """The manifest to stream when the input is exactly one manifest file, else None."""
    from faceattr_ray.data.sources import is_manifest, is_uri

    if len(inputs) != 1 or not is_manifest(inputs[0]):
        return None
    path = inputs[0]
    return path if is_uri(path) or os.path.isfile(os.path.expanduser(path)) else None


def _check_same_columns(output: str, schema: pa.Schema) -> None:
    """Resuming must keep one schema: the columns of a file already there must be the plan's
    (the same --features, --operating-point, --probabilities)."""
    import pyarrow.parquet as pq

    fs, root = _filesystem(output)
    for f in fs.get_file_info(pafs.FileSelector(root, recursive=False)):
        if f.path.endswith(".parquet"):
            with fs.open_input_file(f.path) as handle:
                names = pq.read_schema(handle).names
            if names != schema.names:
                extra = sorted(set(names) ^ set(schema.names))[:3]
                raise DataError(f"{output} holds a table with other columns ({extra} differ): "
                                "resume with the same --features, --operating-point and "
                                "--probabilities, or write to a new --output")
            return


def plan_annotate(inputs: list[str], model: str, output: str,
                  opts: AnnotateOptions) -> AnnotatePlan:
    """Every check that needs no Ray, cheapest first: the options, the output folder, the
    inputs, the model; then what resume leaves to do. Nothing is written.

    One manifest as the input is streamed: checked here in one pass that holds no path, and
    read again inside the pipeline (`pipeline.manifest`); other inputs are listed here."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data import list_inputs
    from faceattr_ray.errors import BundleError
    from faceattr_ray.pipeline.manifest import check_manifest

    opts.check()
    check_output(output)
    manifest = _streamed_manifest(inputs)
    if manifest is not None:
        count, paths = check_manifest(os.path.expanduser(manifest)), None
    else:
        paths = sorted(set(list_inputs(inputs)))
        count = len(paths)
    if not count:
        raise DataError(f"no input files found in {inputs}")
    bundle = load_bundle(model)
    if opts.localizer == "lnet" and (bundle.lnet_o is None or bundle.lnet_s is None):
        raise BundleError(f"{model}: the bundle has no LNets; use --localizer full or cascade")
    schema, _, _ = table_schema(bundle, opts.localizer, opts.features, opts.operating_point,
                                opts.probabilities)
    done_files = result_files(output)
    if done_files and opts.resume == "never":
        raise DataError(f"{output} already holds results; use --resume auto to finish them")
    if done_files:
        _check_same_columns(output, schema)
    if manifest is not None:
        return AnnotatePlan(count, None, model, output, opts, schema,
                            manifest=os.path.expanduser(manifest), done_files=done_files)
    done = completed_paths(output) if done_files else set()
    pending = [p for p in paths if p not in done][: opts.limit]
    return AnnotatePlan(count, pending, model, output, opts, schema, done_files=done_files)


def run_plan(plan: AnnotatePlan) -> dict:
    """Run a planned job (Ray must be initialised) and return its summary."""
    import ray

    start = time.time()
    opts, pending = plan.opts, plan.pending
    # A few batches per block: small enough to spread over decode tasks and to resume at a
    # fine grain, large enough that per-task overhead stays small.
    rows = opts.batch_size * 4
    before = _count(plan.done_files)["images"]
    if pending is None:
        from faceattr_ray.pipeline.manifest import manifest_dataset

        print(f"annotate: {plan.manifest}: {plan.inputs} entries, streamed; {before} images "
              f"already in {len(plan.done_files)} output files are skipped")
        ds = manifest_dataset(plan.manifest, plan.done_files, rows, opts.limit)
    else:
        print(f"annotate: {plan.inputs} inputs, {before} already done, {len(pending)} to do")
        ds = ray.data.from_arrow(
            [pa.table({"path": pending[i : i + rows]}) for i in range(0, len(pending), rows)]
        ) if pending else None  # fmt: skip
    if ds is not None:
        _annotate_dataset(ds, plan)
    elapsed = time.time() - start
    summary = summarize(plan.output, plan.inputs)
    done = summary["images"] - before
    summary.update(processed=done, seconds=round(elapsed, 2),
                   images_per_s=round(done / elapsed, 2) if done else 0.0)
    fs, root = _filesystem(plan.output)
    with fs.open_output_stream(f"{root}/_SUMMARY.json") as f:
        f.write(json.dumps(summary, indent=2).encode())
    return summary


def _annotate_dataset(ds, plan: AnnotatePlan) -> None:
    """paths -> decode tasks -> the model actor pool(s) -> Parquet files in OUTPUT."""
    import ray

    from faceattr_ray.pipeline.manifest import REPARTITION_CPUS

    opts = plan.opts
    actors, gpus, cpus = _actor_resources(opts, REPARTITION_CPUS if plan.pending is None else 0)
    ds = ds.map_batches(decode_batch, fn_kwargs={"max_pixels": opts.max_pixels},
                        batch_size=opts.batch_size, num_cpus=opts.decode_cpus)
    model_path = os.path.abspath(plan.model) if "://" not in plan.model else plan.model
    threads = math.ceil(cpus)

    def pool(actor, **kwargs):
        return ds.map_batches(
            actor, fn_constructor_kwargs={"model": model_path, "localizer": opts.localizer,
                                          "threads": threads, "precision": opts.precision,
                                          **kwargs},
            batch_size=opts.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus, num_cpus=cpus,
        )  # fmt: skip

    rows_opts = {"point": opts.operating_point, "probabilities": opts.probabilities,
                 "timing_log": opts.timing_log}
    if opts.stages == "split":
        ds = pool(LocalizeActor, all_faces=opts.all_faces)
        ds = pool(DescribeActor, with_features=opts.features, **rows_opts)
    else:
        ds = pool(AnnotateActor, all_faces=opts.all_faces, with_features=opts.features,
                  **rows_opts)
    ds.write_parquet(plan.output, schema=plan.schema)  # one schema, footer metadata included


def annotate(inputs: list[str], model: str, output: str, opts: AnnotateOptions) -> dict:
    """Plan and run the job (Ray must be initialised); return its summary."""
    return run_plan(plan_annotate(inputs, model, output, opts))


def summarize(output: str, inputs: int) -> dict:
    """Counts read back from the written table: what a user checks first. File by file: an
    image's rows are all in one file, so the driver never holds every path."""
    return {"inputs": inputs, **_count(result_files(output)), "output": output}


def _count(files: list[str]) -> dict:
    """Images (distinct paths), faces, no-face and error rows, and rows of these files."""
    import pyarrow.compute as pc

    counts = {"images": 0, "faces": 0, "no_face": 0, "errors": 0, "rows": 0}
    for path in files:
        fs, inner = _filesystem(path)
        t = pq.read_table(inner, columns=["path", "status"], filesystem=fs)
        counts["images"] += pc.count_distinct(t["path"]).as_py()
        status = t["status"].to_pylist()
        counts["faces"] += status.count("ok")
        counts["no_face"] += status.count("no_face")
        counts["errors"] += status.count("error")
        counts["rows"] += t.num_rows
    return counts
