"""Blur-kernel families (Gaussian, motion, disk) and kernel pools.

Conventions, shared by every module of the project:

* A kernel is a ``(K, K)`` float32 array, ``K`` odd, non-negative, summing to 1.
* Index ``[i, j]`` is row ``i`` (y, down) and column ``j`` (x, right); the kernel's
  centre is the pixel ``(K // 2, K // 2)``. Gaussians and disks are centred there
  exactly; motion kernels have their centre of mass there (to rounding).
* Sizes grow with the scale factor so the widest kernel of each family fits with
  its tails (Gaussian: at least 3 standard deviations each side):

  ====  ====  ==============================  ==================  ==================
  sf    K     Gaussian variance (eigenvalue)  disk radius (px)    motion path (px)
  ====  ====  ==============================  ==================  ==================
  2     15    0.35 - 5.0                      1.0 - 3.0           2.4 - 9.6
  3     19    0.525 - 7.5                     1.5 - 4.5           3.2 - 12.8
  4     23    0.7 - 10.0                      2.0 - 6.0           4.0 - 16.0
  ====  ====  ==============================  ==================  ==================

  Gaussian eigen-variances follow DIV2KRK ([0.175 sf, 2.5 sf]); the disk radius is
  S2K's 1-3 px range scaled by sf / 2; the exposed motion path is 20-80 % of
  ``K - 3``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


SCALE_FACTORS = (2, 3, 4)
_KERNEL_SIZES = {2: 15, 3: 19, 4: 23}
FAMILIES = ("gaussian", "motion", "disk")
POOL_FORMAT_VERSION = 1


def convolve(a: np.ndarray, b: np.ndarray, mode: str = "full") -> np.ndarray:
    """2-D true convolution of two arrays (``scipy.signal.fftconvolve``, imported on first
    use: importing ``scipy.signal`` takes about a second, which `mkn estimate` — it never
    convolves on the host — should not pay)."""
    from scipy.signal import fftconvolve
    return fftconvolve(a, b, mode=mode)


def kernel_size(sf: int) -> int:
    """Side length ``K`` (odd, pixels in the HR grid) of kernels for scale factor ``sf``."""
    if sf not in _KERNEL_SIZES:
        raise ValueError(f"scale factor must be one of {SCALE_FACTORS}, got {sf!r}")
    return _KERNEL_SIZES[sf]


def normalize_kernel(k: np.ndarray) -> np.ndarray:
    """Clip negatives and scale to sum 1. ``(K, K)`` any float -> ``(K, K)`` float32.

    Raises ValueError when the kernel is non-finite or has no positive mass.
    """
    k = np.asarray(k, dtype=np.float64)
    if not np.all(np.isfinite(k)):
        raise ValueError("kernel contains NaN or infinite values")
    k = np.clip(k, 0.0, None)
    total = k.sum()
    if total <= 0:
        raise ValueError("kernel has no positive mass")
    return (k / total).astype(np.float32)


def center_crop_or_pad(k: np.ndarray, size: int) -> np.ndarray:
    """Crop or zero-pad a ``(K, K)`` kernel to ``(size, size)`` keeping pixel ``K // 2`` centred."""
    k = np.asarray(k)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(f"expected a square odd-sized kernel, got shape {k.shape}")
    if size % 2 == 0:
        raise ValueError(f"target size must be odd, got {size}")
    n = k.shape[0]
    if size <= n:
        off = (n - size) // 2
        return k[off:off + size, off:off + size].copy()
    pad = (size - n) // 2
    return np.pad(k, pad)


def read_kernel(path: str | Path, sf: int) -> np.ndarray:
    """A kernel file for scale factor ``sf``: a ``.npy`` holding a ``(K, K)`` array with
    ``K = kernel_size(sf)``, finite, non-negative and summing to 1 (within 1e-3).
    Returns it as float32; ValueError naming the file and the problem otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a kernel file")
    try:
        k = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such kernel file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a NumPy .npy kernel file ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(k, np.ndarray) or k.dtype.kind not in "fiu":
        raise ValueError(f"{path}: holds {getattr(k, 'dtype', type(k))}, not a numeric kernel array")
    need = kernel_size(sf)
    if k.shape != (need, need):
        other = [f for f in SCALE_FACTORS if k.ndim == 2 and k.shape == (kernel_size(f),) * 2]
        hint = f" (the sf {other[0]} size)" if other else ""
        raise ValueError(f"{path}: kernel of shape {k.shape}{hint}, but sf {sf} needs {need}x{need}")
    if not np.all(np.isfinite(k)) or k.min() < 0:
        raise ValueError(f"{path}: kernel has negative or non-finite taps")
    if abs(float(k.sum()) - 1) > 1e-3:
        raise ValueError(f"{path}: kernel sums to {float(k.sum()):.4g}, not 1; save k / k.sum()")
    return k.astype(np.float32)


def center_of_mass(k: np.ndarray) -> tuple[float, float]:
    """Centre of mass ``(row, col)`` of a non-negative kernel, in pixels."""
    k = np.asarray(k, dtype=np.float64)
    rows, cols = np.indices(k.shape)
    total = k.sum()
    return float((rows * k).sum() / total), float((cols * k).sum() / total)


def gaussian_kernel(size: int, var_major: float, var_minor: float, theta: float = 0.0,
                    noise_level: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Anisotropic Gaussian, centred, ``(size, size)`` float32 summing to 1.

    ``var_major``/``var_minor`` are the covariance eigenvalues (px^2), ``theta`` the
    rotation of the major axis (radians, from the x axis). ``noise_level`` > 0
    multiplies each tap by ``1 + U(-noise_level, noise_level)`` (DIV2KRK style).
    """
    c = size // 2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cov = rot @ np.diag([var_major, var_minor]) @ rot.T
    inv = np.linalg.inv(cov)
    ys, xs = np.mgrid[0:size, 0:size] - c
    d = np.stack([xs, ys], axis=-1).astype(np.float64)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, inv, d))
    if noise_level > 0:
        if rng is None:
            raise ValueError("noise_level > 0 needs an rng")
        k = k * (1.0 + rng.uniform(-noise_level, noise_level, size=k.shape))
    return normalize_kernel(k)


def disk_kernel(size: int, radius: float, supersample: int = 8) -> np.ndarray:
    """Anti-aliased uniform disk (defocus), centred: each tap is the fraction of the
    pixel inside the circle, estimated on a ``supersample``^2 sub-grid."""
    c = size // 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(size) - c
    fine = (grid[:, None] + sub[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius ** 2
    k = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return normalize_kernel(k)


def camera_trajectory(rng: np.random.Generator, n_steps: int = 2000, anxiety: float = 0.005) -> np.ndarray:
    """Random camera-shake path after Boracchi & Foi (TIP 2012): a constant-speed walk
    whose velocity gets Gaussian jitter, a pull back towards the start (centripetal
    term) and rare abrupt reversals. Returns ``(n_steps, 2)`` float64 positions
    ``(row, col)`` with unit total length."""
    step = 1.0 / (n_steps - 1)
    centripetal = 0.7 * rng.random()
    gaussian_term = 10.0 * rng.random()
    big_shake_freq = 0.2 * rng.random()
    angle = 2 * np.pi * rng.random()
    v = np.exp(1j * angle) * anxiety
    shakes = rng.random(n_steps) < big_shake_freq * anxiety
    shake_turn = np.exp(1j * (np.pi + rng.random(n_steps) - 0.5))
    jitter = gaussian_term * (rng.standard_normal(n_steps) + 1j * rng.standard_normal(n_steps))
    x = np.zeros(n_steps, dtype=np.complex128)
    for t in range(n_steps - 1):
        shake = 2 * v * shake_turn[t] if shakes[t] else 0.0
        v = v + shake + anxiety * (jitter[t] - centripetal * x[t]) * step
        v = v / abs(v) * step
        x[t + 1] = x[t] + v
    return np.stack([x.imag, x.real], axis=1)


def motion_kernel(size: int, path: np.ndarray, length: float) -> np.ndarray:
    """Rasterise a path ``(N, 2)`` (row, col) into a ``(size, size)`` kernel.

    The path is scaled to ``length`` pixels of arc (shrunk further if its bounding
    box would not fit in ``size - 3``), resampled to steps of at most 0.25 px,
    shifted so its centre of mass is the kernel centre, and splatted bilinearly
    with equal weight per step (constant speed: equal exposure per unit length).
    """
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    scale = length / max(arc[-1], 1e-12)
    extent = (path.max(axis=0) - path.min(axis=0)).max() * scale
    if extent > size - 3:
        scale *= (size - 3) / extent
    n = max(int(np.ceil(arc[-1] * scale / 0.25)) + 1, 2)
    s = np.linspace(0.0, arc[-1], n)
    pts = np.stack([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])], axis=1) * scale
    pts += (size // 2) - pts.mean(axis=0)
    k = np.zeros((size, size), dtype=np.float64)
    base = np.floor(pts).astype(int)
    frac = pts - base
    for dr in (0, 1):
        for dc in (0, 1):
            w = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            np.add.at(k, (base[:, 0] + dr, base[:, 1] + dc), w)
    return normalize_kernel(k)


def random_gaussian(sf: int, rng: np.random.Generator, isotropic_prob: float = 0.3,
                    noise_level: float = 0.0) -> np.ndarray:
    """DIV2KRK-style Gaussian for ``sf``: eigen-variances U(0.175 sf, 2.5 sf), angle U(0, pi);
    isotropic (equal variances) with probability ``isotropic_prob``."""
    lo, hi = 0.175 * sf, 2.5 * sf
    v1 = rng.uniform(lo, hi)
    v2 = v1 if rng.random() < isotropic_prob else rng.uniform(lo, hi)
    theta = rng.uniform(0.0, np.pi)
    return gaussian_kernel(kernel_size(sf), max(v1, v2), min(v1, v2), theta, noise_level, rng)


def random_motion(sf: int, rng: np.random.Generator, anxiety: float = 0.005) -> np.ndarray:
    """Camera-shake kernel for ``sf``: a Boracchi-Foi path, exposure fraction U(0.15, 0.3)
    of it (S2K's setting), scaled to 20-80 % of ``K - 3`` px of arc."""
    size = kernel_size(sf)
    path = camera_trajectory(rng, anxiety=anxiety)
    exposed = path[: max(int(len(path) * rng.uniform(0.15, 0.3)), 2)]
    return motion_kernel(size, exposed, rng.uniform(0.2, 0.8) * (size - 3))


def random_disk(sf: int, rng: np.random.Generator) -> np.ndarray:
    """Defocus disk for ``sf`` with radius U(0.5 sf, 1.5 sf) px."""
    return disk_kernel(kernel_size(sf), rng.uniform(0.5 * sf, 1.5 * sf))


_GENERATORS = {"gaussian": random_gaussian, "motion": random_motion, "disk": random_disk}


def random_kernel(family: str, sf: int, rng: np.random.Generator) -> np.ndarray:
    """One random kernel of ``family`` (one of :data:`FAMILIES`) for scale factor ``sf``."""
    if family not in _GENERATORS:
        raise ValueError(f"unknown kernel family {family!r}; choose from {FAMILIES}")
    return _GENERATORS[family](sf, rng)


def self_convolve(k: np.ndarray, copies: int, size: int) -> np.ndarray:
    """``k ⊛ k ⊛ ... ⊛ k`` (``copies`` factors), centre-cropped to ``(size, size)``, sum 1."""
    out = np.asarray(k, dtype=np.float64)
    for _ in range(copies - 1):
        out = convolve(out, k, mode="full")
    return normalize_kernel(center_crop_or_pad(out, size))


@dataclass
class KernelPool:
    """A set of kernels for one scale factor. ``kernels``: ``(N, K, K)`` float32;
    ``families``: ``(N,)`` str, the family each kernel came from."""

    sf: int
    kernels: np.ndarray
    families: np.ndarray

    def __post_init__(self) -> None:
        self.kernels = np.asarray(self.kernels, dtype=np.float32)
        self.families = np.asarray(self.families, dtype=str)
        if self.kernels.ndim != 3 or len(self.kernels) != len(self.families):
            raise ValueError("kernels must be (N, K, K) with one family label each")

    def __len__(self) -> int:
        return len(self.kernels)

    @classmethod
    def generate(cls, sf: int, n: int, rng: np.random.Generator,
                 weights: dict[str, float] | None = None) -> "KernelPool":
        """Draw ``n`` kernels; each one's family is drawn with probability ``weights``
        (default: equal over :data:`FAMILIES`)."""
        weights = weights or {f: 1.0 for f in FAMILIES}
        names = list(weights)
        p = np.array([weights[f] for f in names], dtype=np.float64)
        fams = rng.choice(names, size=n, p=p / p.sum())
        return cls(sf, np.stack([random_kernel(f, sf, rng) for f in fams]), fams)

    @classmethod
    def extended_from_sf2(cls, pool2: "KernelPool", sf: int) -> "KernelPool":
        """KernelNet §3.4: make sf 3/4 kernels by self-convolving sf 2 kernels.

        A kernel of width w at sf 2 becomes width ``sqrt(copies) * w``; ``copies`` is
        ``round((sf / 2) ** 2)``: 2 for sf 3 (one self-convolution, width x1.41 vs the
        ideal x1.5) and 4 for sf 4 (width x2, exact).
        """
        if pool2.sf != 2:
            raise ValueError("the pool extension starts from an sf 2 pool")
        copies = int(round((sf / 2) ** 2))
        size = kernel_size(sf)
        ks = np.stack([self_convolve(k, copies, size) for k in pool2.kernels])
        return cls(sf, ks, np.char.add(pool2.families, "-selfconv"))

    @classmethod
    def concat(cls, pools: list["KernelPool"]) -> "KernelPool":
        """One pool holding every kernel of ``pools`` (same sf and kernel size)."""
        if len({p.sf for p in pools}) != 1:
            raise ValueError("cannot mix pools of different scale factors")
        return cls(pools[0].sf, np.concatenate([p.kernels for p in pools]),
                   np.concatenate([p.families for p in pools]))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, K, K)`` float32 kernels drawn with replacement."""
        return self.kernels[rng.integers(0, len(self), size=n)]

    def save(self, path: str | Path) -> None:
        """Write the pool to ``path`` (``.npz``: kernels, families, sf, format version)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, kernels=self.kernels, families=self.families,
                                sf=self.sf, version=POOL_FORMAT_VERSION)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "KernelPool":
        """Read a pool written by :meth:`save`."""
        with np.load(path) as z:
            if int(z["version"]) != POOL_FORMAT_VERSION:
                raise ValueError(f"{path}: kernel pool format {int(z['version'])}, "
                                 f"expected {POOL_FORMAT_VERSION}")
            return cls(int(z["sf"]), z["kernels"], z["families"])
