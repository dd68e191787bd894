"""Kernel estimation over photo collections on Ray Data (`mkn estimate-collection`).

The pipeline: a list of image locations (:func:`list_sources`) -> ``ray.data.from_items``
-> ``map_batches`` on an actor pool, each actor holding one loaded
:class:`estimation.KernelEstimator` (PyTorch, ONNX Runtime or LiteRT) -> rows streamed
back to the driver, which writes them as Parquet parts.

The output ``OUT.parquet`` is a Parquet *dataset* (a folder) that pandas, pyarrow and Ray
read as one table: ``_run.json`` (what was estimated, with what) and ``part-NNNNN.parquet``
files of :data:`SCHEMA`, one row per image. Each part is written under a hidden name and
renamed when complete, so an interrupted run leaves only complete parts, and a re-run
with the same ``--out`` skips every image already in one (a failed image is a finished
row too: its ``error`` says why, and it does not stop the run).

Locations are local paths or URIs of any scheme ``pyarrow.fs`` (Ray's file layer) reads
(``s3://``, ``gs://``, ``hdfs://``, ``file://``); a URI is copied to a local temporary file
for decoding. Ray is the optional extra ``pip install .[scale]``.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .imio import IMAGE_SUFFIXES, atomic_output

RUN_FILE = "_run.json"
PART_GLOB = "part-*.parquet"
PROGRESS_ROWS = 16
"""Rows per batch streamed back to the driver (the progress step)."""
READ_SUFFIXES = tuple(IMAGE_SUFFIXES) + (".webp", ".bmp")
"""File suffixes a folder or URI listing picks up (case-insensitive)."""

EXIF_FIELDS = {"make": "Make", "device_model": "Model", "focal_length_mm": "FocalLength",
               "focal_length_35mm": "FocalLengthIn35mmFilm", "iso": "ISOSpeedRatings",
               "exposure_s": "ExposureTime", "f_number": "FNumber"}
"""Row column -> EXIF tag name (``PIL.ExifTags.Base``) of the fields a lens/ISP study groups by."""


@functools.lru_cache(maxsize=1)
def _schema():
    import pyarrow as pa

    text = {"make", "device_model"}
    return pa.schema([("path", pa.string()), ("sf", pa.int32()), ("kernel_size", pa.int32()),
                      ("kernel", pa.list_(pa.float32())), ("source", pa.string()),
                      ("window_how", pa.string()), ("window_y", pa.int32()), ("window_x", pa.int32()),
                      ("window_height", pa.int32()), ("window_width", pa.int32()),
                      ("image_height", pa.int32()), ("image_width", pa.int32()),
                      *[(c, pa.string() if c in text else pa.float64()) for c in EXIF_FIELDS],
                      ("error", pa.string())])


@dataclass(frozen=True)
class CollectionRun:
    """What one output folder holds estimates of: every row of ``OUT.parquet`` was made with
    these settings (a resumed run must use the same)."""

    sf: int
    model: str
    config: str | None = None
    budget: int | None = None
    model_file: str | None = None
    model_file_sha256: str | None = None
    format: str | None = None

    def estimator_kwargs(self) -> dict:
        """Arguments of :class:`estimation.KernelEstimator` for these settings."""
        return dict(sf=self.sf, model=self.model, config=self.config, budget=self.budget,
                    artifact=self.model_file, artifact_format=self.format)


# -- what to read ---------------------------------------------------------------
def _is_uri(location: str) -> bool:
    return "://" in location


def list_sources(src: str | Path) -> list[str]:
    """Image locations of ``src``, sorted: a folder (recursive; local or a URI), a glob
    (local, ``**`` recursive), a list file (``.txt`` / ``.lst``: one path or URI per line,
    blank lines and ``#`` comments skipped), or one image. Folder and glob listings keep
    files with a suffix of :data:`READ_SUFFIXES`. Raises FileNotFoundError when ``src``
    names nothing, ValueError when it holds no image."""
    src = str(src)
    if _is_uri(src):
        items = _list_uri(src)
    elif any(c in src for c in "*?["):
        items = sorted(p for p in glob.glob(src, recursive=True) if _is_image_name(p) and os.path.isfile(p))
    elif os.path.isdir(src):
        items = sorted(str(p) for p in Path(src).rglob("*") if _is_image_name(p.name) and p.is_file())
    elif not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: no such folder, list file or image")
    elif Path(src).suffix.lower() in (".txt", ".lst"):
        lines = (line.strip() for line in Path(src).read_text().splitlines())
        items = [line for line in lines if line and not line.startswith("#")]
    else:
        items = [src]
    if not items:
        raise ValueError(f"{src}: no images ({', '.join(READ_SUFFIXES)}) found")
    return items


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in READ_SUFFIXES


def _list_uri(uri: str) -> list[str]:
    """Files under the URI ``uri`` (a folder) or ``[uri]`` (one file), by ``pyarrow.fs``."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if info.type == fs.FileType.File:
        return [uri]
    scheme = uri.split("://", 1)[0]
    found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    return sorted(f"{scheme}://{f.path}" for f in found if f.type == fs.FileType.File and _is_image_name(f.path))


@contextlib.contextmanager
def local_file(location: str) -> Iterator[str]:
    """A local path for ``location``: itself, or a temporary copy of a URI (same suffix)."""
    if not _is_uri(location):
        yield location
        return
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(location)
    with tempfile.NamedTemporaryFile(suffix=Path(path).suffix) as tmp:
        with filesystem.open_input_stream(path) as stream:
            tmp.write(stream.read())
        tmp.flush()
        yield tmp.name


def exif_fields(path: str) -> dict:
    """The :data:`EXIF_FIELDS` of an image file (``None`` where absent or unreadable)."""
    from PIL import Image
    from PIL.ExifTags import IFD, Base

    out = dict.fromkeys(EXIF_FIELDS)
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            tags = {**exif, **exif.get_ifd(IFD.Exif)}
    except Exception:  # not a Pillow format, or a broken header: no EXIF
        return out
    for column, name in EXIF_FIELDS.items():
        value = tags.get(Base[name].value)
        if isinstance(value, tuple):  # ISO may come as (iso, ...)
            value = value[0] if value else None
        if value is None:
            continue
        if column in ("make", "device_model"):
            out[column] = str(value).strip("\x00 ") or None
        else:
            try:
                out[column] = float(value)
            except (TypeError, ValueError, ZeroDivisionError):
                pass
    return out


# -- one row per image ----------------------------------------------------------
def estimate_row(estimator, location: str) -> dict:
    """The output row of one image (:func:`_schema` columns); a failure gives a row with
    ``error`` set and no kernel."""
    from .imio import InputError

    row = {"path": location, "sf": estimator.sf, "source": estimator.source, "error": None,
           **dict.fromkeys(EXIF_FIELDS)}
    try:
        with local_file(location) as path:
            row.update(exif_fields(path))
            est = estimator(path)
    except (InputError, OSError, ValueError) as exc:
        row["error"] = str(exc) or exc.__class__.__name__
        return row
    w = est.window
    row.update(kernel_size=est.kernel.shape[0], kernel=est.kernel.ravel().tolist(), window_how=w.how,
               window_y=w.y, window_x=w.x, window_height=w.height, window_width=w.width,
               image_height=w.image_shape[0], image_width=w.image_shape[1])
    return row


class EstimatorActor:
    """A Ray Data ``map_batches`` class: one :class:`estimation.KernelEstimator` per actor,
    a batch ``{"path": [...]}`` -> a batch of rows (:func:`_schema`)."""

    def __init__(self, run: dict, threads: int = 1):
        import torch

        from .estimation import KernelEstimator

        torch.set_num_threads(threads)
        self.estimator = KernelEstimator(**CollectionRun(**run).estimator_kwargs(), threads=threads)

    def __call__(self, batch: dict) -> "pyarrow.Table":  # noqa: F821
        import pyarrow as pa

        rows = [estimate_row(self.estimator, str(p)) for p in batch["path"]]
        return pa.Table.from_pylist(rows, schema=_schema())


# -- the output folder ----------------------------------------------------------
def read_rows(out: str | Path, columns: list[str] | None = None):
    """Every complete part of ``out`` as one ``pyarrow.Table`` (empty table when none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(Path(out).glob(PART_GLOB))
    if not parts:
        return _schema().empty_table() if columns is None else _schema().empty_table().select(columns)
    return pa.concat_tables(pq.read_table(p, columns=columns) for p in parts)


def open_output(out: Path, run: CollectionRun) -> set[str]:
    """Create ``out`` for ``run``, or check it holds a run with the same settings; returns
    the locations already done there. Raises ValueError for another run's folder or a
    path that is not such a folder."""
    record = out / RUN_FILE
    if out.exists() and not record.is_file():
        raise ValueError(f"{out}: exists and is not an estimate-collection output (no {RUN_FILE})")
    if record.is_file():
        held = CollectionRun(**json.loads(record.read_text()))
        if held != run:
            diff = {k: (v, getattr(run, k)) for k, v in asdict(held).items() if v != getattr(run, k)}
            raise ValueError(f"{out}: holds estimates made with other settings "
                             f"({', '.join(f'{k} {a} vs {b}' for k, (a, b) in diff.items())}); use another --out")
        return set(read_rows(out, ["path"]).column("path").to_pylist())
    out.mkdir(parents=True)
    with atomic_output(record) as tmp:
        tmp.write_text(json.dumps(asdict(run), indent=1))
    return set()


def write_part(out: Path, table) -> Path:
    """Write ``table`` as the next ``part-NNNNN.parquet`` of ``out``, atomically."""
    import pyarrow.parquet as pq

    numbers = [int(p.stem.split("-")[1]) for p in out.glob(PART_GLOB)]
    path = out / f"part-{max(numbers, default=-1) + 1:05d}.parquet"
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


@dataclass(frozen=True)
class CollectionSummary:
    """What one call of :func:`estimate_collection` did: ``listed`` images, ``skipped`` (done
    by an earlier run), ``estimated`` and ``failed`` now, ``workers`` actors."""

    listed: int
    skipped: int
    estimated: int
    failed: int
    workers: int


def estimate_collection(src: str | Path, out: str | Path, run: CollectionRun, address: str | None = None,
                        workers: int | None = None, rows_per_part: int = 256, flush_seconds: float = 60.0,
                        progress: Callable[[int, int], None] | None = None) -> CollectionSummary:
    """Estimate the kernel of every image of ``src`` (:func:`list_sources`) into the Parquet
    dataset ``out`` with the settings ``run``, on Ray Data: a local Ray started here with
    the machine's cores (``address`` None, and no Ray already initialised in this
    process), or the cluster at ``address``. ``workers``: estimator actors (default: the
    cluster's CPUs, each actor 1 CPU and 1 thread). Finished rows are written as a part
    every ``rows_per_part`` rows or ``flush_seconds`` (an interruption loses at most
    that); ``progress(done, total)`` is called every :data:`PROGRESS_ROWS` rows.
    Raises ValueError / FileNotFoundError for a bad ``src``, ``out`` or model file before
    any work."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # its per-run INFO lines; progress is ours
    import pyarrow as pa
    import ray

    from .estimation import KernelEstimator

    out = Path(out)
    items = list_sources(src)
    KernelEstimator(**run.estimator_kwargs())  # a bad model or model file fails here, not in every actor
    done = open_output(out, run)
    todo = [p for p in items if p not in done]
    if not todo:
        return CollectionSummary(len(items), len(items), 0, 0, 0)
    started = not ray.is_initialized()
    if started:
        local = dict(address="local", num_cpus=os.cpu_count())  # a new Ray, even when one runs here already
        ray.init(**(local if address is None else dict(address=address)), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=min(len(todo), 4 * workers))
        ds = ds.map_batches(EstimatorActor, fn_constructor_kwargs={"run": asdict(run)}, batch_size=8,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
        failed = estimated = 0
        pending, flushed = [], time.monotonic()
        for table in ds.iter_batches(batch_size=PROGRESS_ROWS, batch_format="pyarrow"):
            pending.append(table.cast(_schema()))
            estimated += table.num_rows
            failed += table.num_rows - table.column("error").null_count
            if sum(t.num_rows for t in pending) >= rows_per_part or time.monotonic() - flushed > flush_seconds:
                write_part(out, pa.concat_tables(pending))
                pending, flushed = [], time.monotonic()
            if progress:
                progress(estimated, len(todo))
        if pending:
            write_part(out, pa.concat_tables(pending))
    finally:
        if started:
            ray.shutdown()
    return CollectionSummary(len(items), len(items) - len(todo), estimated, failed, workers)
