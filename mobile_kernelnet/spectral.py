"""One interface for everything FFT-shaped the models do, with two backends.

Complex numbers are ``(re, im)`` pairs of real tensors everywhere, so no complex
dtype reaches an exported graph.

* ``"torch"`` — :mod:`torch.fft` (the reference; any size; exports to ONNX ``DFT``
  with the dynamo exporter).
* ``"matmul"`` — the DFT as products with constant real cos/sin matrices, built once
  per transform size and cached (traced into an exported graph as constants). Every
  product is a 2-D ``(M, n) @ (n, m)`` MatMul (the batch is folded into rows): no
  ``DFT`` op, no complex type, and no 4-D MatMul whose axes a layout converter
  could reorder (see ../shared/TOOLCHAIN_NOTES.md).
* ``"matmul-int8"`` — the ``matmul`` graph with every constant product ``x @ M`` written as
  two, ``x @ M_hi + x @ M_lo`` (:func:`int8_split`): ``M_hi`` lies on ``M``'s per-column
  int8 grid, so a per-channel int8 weight holds it exactly, and ``M_lo`` carries the rest
  at 1/127 of its size — ~15-bit constants in a file whose weights are int8 (the full-
  integer TFLite file; int8 DFT matrices alone move its kernels by 2-3 %, NOTES.md).

Shapes: ``rfft2`` maps ``(..., H, W)`` real to a pair of ``(..., H, W // 2 + 1)``;
``irfft2`` maps such a pair back to ``(..., H, W)`` given the size (or to its centred
``(..., L, L)`` window, computing only that); ``fft2`` /
``ifft2_real`` are the full-spectrum pair (needed where the spectrum is split into
blocks, as in the SR solver). Unnormalised
forward transform, ``1 / (H W)`` on the inverse (numpy's "backward" norm).
"""
from __future__ import annotations

import math

import numpy as np
import torch

BACKENDS = ("torch", "matmul", "matmul-int8")
Complex = tuple[torch.Tensor, torch.Tensor]


def cmul(a: Complex, b: Complex) -> Complex:
    """``a * b``."""
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def conj(a: Complex) -> Complex:
    """Complex conjugate."""
    return a[0], -a[1]


def cmul_conj(a: Complex, b: Complex) -> Complex:
    """``conj(a) * b``, with no negation op."""
    return a[0] * b[0] + a[1] * b[1], a[0] * b[1] - a[1] * b[0]


def abs2(a: Complex) -> torch.Tensor:
    """``|a|^2`` (real)."""
    return a[0] * a[0] + a[1] * a[1]


def cdiv_real(a: Complex, d: torch.Tensor) -> Complex:
    """``a / d`` for a real, non-zero ``d``."""
    return a[0] / d, a[1] / d


def cpow(a: Complex, n: int) -> Complex:
    """``a ** n`` for an integer ``n >= 1`` by repeated squaring (``floor(log2 n)``
    squarings plus one product per extra set bit)."""
    if n < 1:
        raise ValueError(f"power must be >= 1, got {n}")
    result = None
    base = a
    while True:
        if n & 1:
            result = base if result is None else cmul(result, base)
        n >>= 1
        if not n:
            return result
        base = cmul(base, base)


def centered_crop_from_circular(x: torch.Tensor, size: int) -> torch.Tensor:
    """The ``(size, size)`` window around index ``(0, 0)`` of a circular signal
    ``(..., N, M)``, rearranged so that index 0 lands on ``size // 2`` (fftshift + crop)."""
    r = size // 2
    rows = torch.cat([x[..., -r:, :], x[..., : size - r, :]], dim=-2)
    return torch.cat([rows[..., -r:], rows[..., : size - r]], dim=-1)


def circular_from_centered(k: torch.Tensor, n: int | tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`centered_crop_from_circular`: place a centred ``(..., L, L)``
    kernel on an ``(n, n)`` (or ``(h, w)``) circular grid with its centre at index ``(0, 0)``."""
    h, w = (n, n) if isinstance(n, int) else n
    size = k.shape[-1]
    r = size // 2
    x = torch.nn.functional.pad(k, (0, w - size, 0, h - size))  # centre now at (r, r)
    x = torch.cat([x[..., r:, :], x[..., :r, :]], dim=-2)       # roll by -r: centre -> 0
    return torch.cat([x[..., :, r:], x[..., :, :r]], dim=-1)


def matmul_last(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``x @ m`` on the last axis, as one 2-D MatMul: ``(..., n)`` by ``(n, k)`` -> ``(..., k)``."""
    lead = x.shape[:-1]
    return torch.matmul(x.reshape(-1, x.shape[-1]), m).reshape(*lead, m.shape[-1])


def matmul_rows(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``m @ x`` on the second-last axis, as a 2-D MatMul between two transposes:
    ``(k, n)`` by ``(..., n, w)`` -> ``(..., k, w)``."""
    return matmul_last(x.transpose(-1, -2), m.transpose(0, 1)).transpose(-1, -2)


def _dft_matrix(kind: str, n: int) -> np.ndarray:
    """The float64 matrix ``kind`` of :meth:`Spectral._array` (no modifiers)."""
    j = np.arange(n, dtype=np.float64)
    if kind in ("cos", "sin"):
        ang = 2 * math.pi * np.outer(j, j) / n
    else:
        h = np.arange(n // 2 + 1, dtype=np.float64)
        ang = 2 * math.pi * np.outer(j, h) / n
        if kind in ("icos", "isin"):
            ang = ang.T
    mat = np.cos(ang) if kind.endswith("cos") else np.sin(ang)
    if kind in ("icos", "isin"):
        w = np.full(n // 2 + 1, 2.0)
        w[0] = 1.0
        if n % 2 == 0:
            w[-1] = 1.0
        mat = mat * (w / n)[:, None]
    return mat


def int8_split(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` with ``hi + lo = m`` for a float ``(n, k)`` matrix: ``hi`` is ``m`` rounded to
    steps of ``max|column| / 127`` (exact in per-column int8), ``lo`` the remainder (at most
    half a step)."""
    step = np.maximum(np.abs(m).max(axis=0, keepdims=True), 1e-30) / 127
    hi = np.round(m / step) * step
    return hi, m - hi


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


class Spectral:
    """FFT operations with a chosen backend (:data:`BACKENDS`, module docstring)."""

    def __init__(self, backend: str = "torch"):
        if backend not in BACKENDS:
            raise ValueError(f"spectral backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self._arrays: dict[tuple[str, int], np.ndarray] = {}
        self._factors: dict[tuple[int, torch.dtype], tuple[np.ndarray, tuple[np.ndarray, ...]]] = {}

    def _array(self, kind: str, n: int) -> np.ndarray:
        """Constant float64 DFT matrices, cached per size:
        ``cos``/``sin`` ``(n, n)``: ``cos(2 pi k j / n)``; ``rcos``/``rsin`` ``(n, n//2+1)``:
        the same for the half spectrum; ``icos``/``isin`` ``(n//2+1, n)``: the
        weighted half-spectrum synthesis of ``irfft`` (weights 1 for DC and Nyquist, 2 else, over n).
        A leading ``-`` negates the matrix and a trailing ``/n`` divides it by ``n``, so that
        signs and normalisations are folded into constants (the graph gets no NEG or DIV).
        The square ones (``cos``, ``sin``, with or without ``/n``) are symmetric."""
        key = (kind, n)
        if key not in self._arrays:
            base = kind.lstrip("-").removesuffix("/n")
            mat = _dft_matrix(base, n)
            if kind.startswith("-"):
                mat = -mat
            if kind.endswith("/n"):
                mat = mat / n
            self._arrays[key] = mat
        return self._arrays[key]

    def matmul_constant(self, x: torch.Tensor, a: np.ndarray) -> torch.Tensor:
        """``x @ a`` on the last axis (:func:`matmul_last`) for a constant float64 ``a`` ``(n, k)``
        that the caller keeps (cached by identity); ``matmul-int8`` makes it two products
        (module docstring). The cache holds numpy arrays in ``x``'s dtype and each call makes
        fresh tensors over them (no copy on the CPU): a tensor made while an exporter traces
        must not come back to a later eager call."""
        key = (id(a), x.dtype)
        if key not in self._factors:
            parts = int8_split(a) if self.backend == "matmul-int8" else (a,)
            np_dtype = _NUMPY_DTYPES.get(x.dtype, np.float64)
            self._factors[key] = (a, tuple(p.astype(np_dtype) for p in parts))  # holding a keeps its id unique
        out = None
        for part in self._factors[key][1]:
            y = matmul_last(x, torch.from_numpy(part).to(dtype=x.dtype, device=x.device))
            out = y if out is None else out + y
        return out

    def _last(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """``x @ M`` for the DFT matrix ``kind`` of ``x``'s last-axis size (:meth:`_array`)."""
        return self.matmul_constant(x, self._array(kind, x.shape[-1]))

    def _rows(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """``M @ x`` on the second-last axis for a square (symmetric) DFT matrix ``kind``, as a
        2-D MatMul between two transposes (:func:`matmul_rows`)."""
        return self._last(x.transpose(-1, -2), kind).transpose(-1, -2)

    def _cols_forward(self, a: torch.Tensor, b: torch.Tensor) -> Complex:
        """``(C - iS)(a + ib)`` along the second-last axis (the H-side of a forward DFT)."""
        return self._rows("cos", a) + self._rows("sin", b), self._rows("cos", b) - self._rows("sin", a)

    def _matmul_forward(self, x: torch.Tensor, cos_kind: str, sin_kind: str) -> Complex:
        """Forward DFT of real ``x``: ``x e^{-i..}`` along W with the given matrices
        (half or full spectrum), then :meth:`_cols_forward` along H."""
        return self._cols_forward(self._last(x, cos_kind), self._last(x, "-" + sin_kind))

    def _cols_inverse(self, z: Complex, crop: int | None = None) -> Complex:
        """``(1/H)(C + iS)(re + i im)`` along the second-last axis (with ``crop``: only the
        rows of the centred window, :meth:`_columns`), as 2-D MatMuls between transposes:
        ``(M[idx, :] @ x)^T = x^T @ M[:, idx]`` (``M`` symmetric), one transpose back per part."""
        h = z[0].shape[-2]
        re_t, im_t = (part.transpose(-1, -2) for part in z)
        cos_h, sin_h = self._columns("cos/n", h, crop), self._columns("sin/n", h, crop)
        product = self.matmul_constant
        return ((product(re_t, cos_h) - product(im_t, sin_h)).transpose(-1, -2),
                (product(im_t, cos_h) + product(re_t, sin_h)).transpose(-1, -2))

    def rfft2(self, x: torch.Tensor) -> Complex:
        """Real 2-D DFT of ``(..., H, W)`` -> ``(re, im)`` each ``(..., H, W // 2 + 1)``."""
        if self.backend == "torch":
            z = torch.fft.rfft2(x)
            return z.real, z.imag
        return self._matmul_forward(x, "rcos", "rsin")

    def irfft2(self, z: Complex, size: tuple[int, int], crop: int | None = None) -> torch.Tensor:
        """Inverse of :meth:`rfft2` for an ``(H, W)`` output (imaginary parts of the DC
        and Nyquist columns are ignored, as ``torch.fft.irfft2`` does); with ``crop``, only
        its centred ``(crop, crop)`` window (:func:`centered_crop_from_circular`), which the
        matmul backends compute alone (the synthesis matrices restricted to its rows and
        columns: ``crop / H`` of the work on H, ``crop / W`` on W)."""
        if self.backend == "torch":
            out = torch.fft.irfft2(torch.complex(z[0], z[1]), s=size)
            return out if crop is None else centered_crop_from_circular(out, crop)
        w = size[1]
        yr, yi = self._cols_inverse(z, crop)
        return (self.matmul_constant(yr, self._columns("icos", w, crop)) -
                self.matmul_constant(yi, self._columns("isin", w, crop)))

    def _columns(self, kind: str, n: int, crop: int | None) -> np.ndarray:
        """:meth:`_array` ``kind`` of size ``n`` with only the columns of the centred ``crop``
        window of a length-``n`` circular signal (all of them without ``crop``), cached."""
        if crop is None:
            return self._array(kind, n)
        key = (f"{kind}[{crop}]", n)
        if key not in self._arrays:
            self._arrays[key] = np.ascontiguousarray(self._array(kind, n)[:, (np.arange(crop) - crop // 2) % n])
        return self._arrays[key]

    def fft2(self, x: torch.Tensor) -> Complex:
        """Full 2-D DFT of a real ``(..., H, W)`` -> ``(re, im)`` each ``(..., H, W)``."""
        if self.backend == "torch":
            z = torch.fft.fft2(x)
            return z.real, z.imag
        return self._matmul_forward(x, "cos", "sin")

    def ifft2_real(self, z: Complex) -> torch.Tensor:
        """Real part of the inverse full 2-D DFT: ``(re, im)`` ``(..., H, W)`` -> ``(..., H, W)``."""
        if self.backend == "torch":
            return torch.fft.ifft2(torch.complex(z[0], z[1])).real
        yr, yi = self._cols_inverse(z)
        return self._last(yr, "cos/n") - self._last(yi, "sin/n")
