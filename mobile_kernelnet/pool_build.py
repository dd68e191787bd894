"""A camera's own kernel pool from estimated kernels (`mkn pool build`).

KernelNet builds its training pool partly from kernels estimated on real images (§3.4).
:func:`build_pool` turns the rows of an `mkn estimate-collection` output (optionally
filtered, e.g. ``"iso < 800 and device_model == 'Pixel 8'"``) into the
:class:`kernels.KernelPool` file that `mkn train --pool` reads, with a report.

Shape statistics of one kernel ``k`` (HR pixels), from its second moments about its
centre of mass (eigenvalues ``λ1 >= λ2`` of the covariance):

* ``width`` = ``sqrt((λ1 + λ2) / 2)``: the standard deviation of an isotropic Gaussian
  of the same spread;
* ``anisotropy`` = ``sqrt(λ1 / λ2)`` (1 = round);
* ``kurtosis`` = ``E[d⁴] / E[d²]²`` of the Mahalanobis distance ``d``: 2 for a Gaussian,
  4/3 for a uniform disk, whatever their size and orientation.

Each kernel gets the label of the family it looks like (:func:`family_like`):
``motion-like`` when ``anisotropy > MOTION_ANISOTROPY``, else ``disk-like`` when
``kurtosis < DISK_KURTOSIS``, else ``gaussian-like``. The labels are the pool's
``families`` (training validates per label).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .collection import read_rows
from .imio import atomic_output
from .kernels import KernelPool, kernel_size

MOTION_ANISOTROPY = 2.5
DISK_KURTOSIS = 1.6
GRID_SIDE = 8
"""The report's PNG shows up to ``GRID_SIDE²`` kernels."""


@dataclass(frozen=True)
class KernelShape:
    """:func:`kernel_shape` of one kernel (module docstring)."""

    width: float
    anisotropy: float
    kurtosis: float


def kernel_shape(k: np.ndarray) -> KernelShape:
    """Width (HR px), anisotropy and Mahalanobis kurtosis of a ``(K, K)`` kernel (sum 1)."""
    k = np.asarray(k, np.float64) / k.sum()
    yy, xx = np.mgrid[:k.shape[0], :k.shape[1]].astype(np.float64)
    cy, cx = (k * yy).sum(), (k * xx).sum()
    dy, dx = yy - cy, xx - cx
    cov = np.array([[(k * dy * dy).sum(), (k * dy * dx).sum()], [(k * dy * dx).sum(), (k * dx * dx).sum()]])
    lam = np.clip(np.linalg.eigvalsh(cov)[::-1], 1e-12, None)
    inv = np.linalg.inv(cov + 1e-12 * np.eye(2))
    d2 = inv[0, 0] * dy * dy + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx * dx
    return KernelShape(float(np.sqrt(lam.mean())), float(np.sqrt(lam[0] / lam[1])),
                       float((k * d2 * d2).sum() / (k * d2).sum() ** 2))


def family_like(shape: KernelShape) -> str:
    """The label of the family a kernel of ``shape`` looks like (module docstring)."""
    if shape.anisotropy > MOTION_ANISOTROPY:
        return "motion-like"
    return "disk-like" if shape.kurtosis < DISK_KURTOSIS else "gaussian-like"


@dataclass(frozen=True)
class PoolReport:
    """What went into a pool: ``rows`` read, ``failed`` (an error row), ``filtered_out``,
    ``kernels`` kept; shape statistics over the kept kernels; label shares."""

    source: str
    filter: str | None
    sf: int
    rows: int
    failed: int
    filtered_out: int
    kernels: int
    mean_width: float
    median_anisotropy: float
    mean_kurtosis: float
    family_like: dict[str, float]


def select_rows(source: str | Path, where: str | None = None):
    """``(kept, rows, failed)``: the estimated rows of ``source`` (an `mkn estimate-collection`
    output) kept by ``where`` (a ``DataFrame.query`` expression over the columns, e.g.
    ``"iso < 800"``) as a pandas DataFrame, how many rows it holds and how many of them
    failed. Raises ValueError for a bad expression or an unknown column."""
    frame = read_rows(source).to_pandas()
    rows, failed = len(frame), int(frame["error"].notna().sum())
    frame = frame[frame["error"].isna()]
    if where:
        try:
            frame = frame.query(where)
        except Exception as exc:  # pandas raises many types for a bad expression
            raise ValueError(f"--filter {where!r}: {exc} (columns: {', '.join(c for c in frame.columns if c != 'kernel')})")
    return frame, rows, failed


def build_pool(source: str | Path, out: str | Path, where: str | None = None) -> PoolReport:
    """Write the pool of the kept rows of ``source`` (:func:`select_rows`) to ``out``
    (``.npz``, :meth:`kernels.KernelPool.save`), its report to ``out`` with ``.json`` and
    a grid of its kernels and their mean to ``out`` with ``.png``; returns the report.
    Raises ValueError when no kernel is left or the rows mix scale factors."""
    source, out = Path(source), Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: a pool is a .npz file")
    frame, rows, failed = select_rows(source, where)
    if frame.empty:
        raise ValueError(f"{source}: no estimated kernel left ({rows} rows, {failed} failed"
                         f"{', filter ' + repr(where) if where else ''})")
    sfs = sorted(set(frame["sf"]))
    if len(sfs) > 1:
        raise ValueError(f"{source}: rows of several scale factors {sfs}; filter one, e.g. \"sf == {sfs[0]}\"")
    sf, size = int(sfs[0]), kernel_size(int(sfs[0]))
    kernels = np.stack([np.asarray(k, np.float32).reshape(size, size) for k in frame["kernel"]])
    shapes = [kernel_shape(k) for k in kernels]
    labels = np.array([family_like(s) for s in shapes])
    KernelPool(sf, kernels, labels).save(out)
    names, counts = np.unique(labels, return_counts=True)
    report = PoolReport(str(source), where, sf, rows, failed, rows - failed - len(frame), len(kernels),
                        float(np.mean([s.width for s in shapes])), float(np.median([s.anisotropy for s in shapes])),
                        float(np.mean([s.kurtosis for s in shapes])),
                        {str(n): round(float(c) / len(labels), 4) for n, c in zip(names, counts)})
    with atomic_output(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(asdict(report), indent=1))
    kernel_grid(kernels, labels, out.with_suffix(".png"))
    return report


def kernel_grid(kernels: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """A PNG of up to ``GRID_SIDE²`` kernels (evenly spaced through the pool, each scaled to
    its own peak, titled with its label) beside the pool's mean kernel."""
    from .figures import plt

    pick = np.linspace(0, len(kernels) - 1, min(len(kernels), GRID_SIDE ** 2)).round().astype(int)
    cols = min(GRID_SIDE, len(pick))
    rows = -(-len(pick) // cols)
    fig = plt.figure(figsize=(1.1 * cols + 2.6, 1.2 * rows + 0.4))
    grid = fig.add_gridspec(rows, cols + 2)
    for n, i in enumerate(pick):
        ax = fig.add_subplot(grid[n // cols, n % cols])
        ax.imshow(kernels[i], cmap="magma", interpolation="nearest")
        ax.set_title(labels[i].replace("-like", ""), fontsize=6)
        ax.axis("off")
    ax = fig.add_subplot(grid[:, cols:])
    ax.imshow(kernels.mean(axis=0), cmap="magma", interpolation="nearest")
    ax.set_title(f"mean of {len(kernels)}", fontsize=8)
    ax.axis("off")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
