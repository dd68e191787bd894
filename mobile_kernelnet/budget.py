"""What an estimator sees of a photo: one fixed pixel budget, whatever the photo's size.

A blur kernel is one small array per image, and KernelNet's FFT-1 needs edges, not
megapixels. Every path — the PyTorch models, an exported file, parity, the benchmark and
the phone runner contract — therefore feeds the estimator one ``S x S`` LR window,
``S = BUDGETS[sf]`` (or the model's own side, :data:`MODEL_BUDGETS`) unless chosen
otherwise (an export's ``input_size``):

* a side longer than ``S`` is cut to ``S`` where the window holds the most **edge
  energy** (sum of squared forward differences, the signal FFT-1's least squares is made
  of), searched on a copy block-averaged by ``f = max(1, min(H, W) // (4 S))`` with an
  integral image, so the search costs a few passes over the photo;
* a side of at most ``S`` is kept whole. The PyTorch models take any size and run on
  that window as it is; an exported graph has a fixed ``S x S`` input, so
  :func:`pad_to_budget` reflect-pads the window symmetrically to it (as exported files
  always required). Photos larger than the budget — the case that matters — give the
  same ``S x S`` pixels to every path.

For app developers this is the whole pre-processing: luma (BT.601) in [0, 1], then
:func:`select_window` and :func:`apply_window`; the window's position is reported in the
output line and JSON of `mkn estimate` (:meth:`Window.describe`).

The budget per sf: 192 px at sf 2 (0.56x the pixels and FLOPs of a 256-px window, for the
desktop and phone latency targets), and the test set's LR side rounded up at sf 3 and 4
(168 / 126 -> 168 / 128 px), so those test images are used whole. At sf 2 the choice was
made on validation images only (`tools/budget_study.py --sf 2`, NOTES.md): for both
estimators, clean and at every camera level, the paired 95 % interval of the L1 difference
between 192 px and the whole image holds 0 or favours 192 px (upper ends <= +0.016).

S2K reads the window's amplitude spectrum, not its edges, and takes 128 px at sf 2: on the
same validation cases (`results/budget_study_sf2.json`), 128 minus 192 px is -0.002 clean
and -0.023 / -0.005 / +0.004 at the low / medium / high camera levels, every paired 95 %
interval holding 0 or favouring 128 px, for 0.44x the pixels (issue 21's 2 ms target).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BUDGETS = {2: 192, 3: 168, 4: 128}
"""Default LR window side per scale factor (px)."""
MODEL_BUDGETS = {"s2k": {2: 128}, "s2k-noadv": {2: 128}}
"""Registered models whose window side differs from :data:`BUDGETS` at some sf: model ->
{sf: side} (the S2K ablation follows S2K, so the two compare on the same pixels)."""


@dataclass(frozen=True)
class Window:
    """Which pixels an estimator saw: rows ``y .. y + height`` and columns ``x .. x + width``
    of an image of ``image_shape``; ``how`` is ``"whole image"`` or ``"edge-energy crop"``."""

    y: int
    x: int
    height: int
    width: int
    how: str
    image_shape: tuple[int, int]

    def describe(self) -> str:
        """One line for the user, e.g. ``"edge-energy crop 256x256 at (y 812, x 1904) of 4000x6000"``."""
        h, w = self.image_shape
        if self.how == "whole image":
            return f"whole image {h}x{w}"
        return f"{self.how} {self.height}x{self.width} at (y {self.y}, x {self.x}) of {h}x{w}"

    def as_dict(self) -> dict:
        return {**asdict(self), "image_shape": list(self.image_shape)}


def budget_for(sf: int, size: int | None = None, model: str | None = None) -> int:
    """The window side: ``size`` if given, else ``model``'s side at ``sf`` in
    :data:`MODEL_BUDGETS`, else :data:`BUDGETS` ``[sf]``."""
    if size is not None:
        if size < 1:
            raise ValueError(f"budget must be a positive side in px, got {size}")
        return size
    if sf not in BUDGETS:
        raise ValueError(f"no default budget for sf {sf}; choose from {sorted(BUDGETS)}")
    return MODEL_BUDGETS.get(model, {}).get(sf, BUDGETS[sf])


def _best_offset(energy: np.ndarray, wh: int, ww: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``wh x ww`` window with the largest sum of ``energy``."""
    c = np.zeros((energy.shape[0] + 1, energy.shape[1] + 1))
    c[1:, 1:] = energy.cumsum(0).cumsum(1)
    sums = c[wh:, ww:] - c[:-wh, ww:] - c[wh:, :-ww] + c[:-wh, :-ww]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def select_window(img: np.ndarray, size: int) -> Window:
    """The window an estimator with budget ``size`` sees of ``img`` ``(H, W)`` (module docstring)."""
    h, w = img.shape
    wh, ww = min(h, size), min(w, size)
    if (wh, ww) == (h, w):
        return Window(0, 0, h, w, "whole image", (h, w))
    f = max(1, min(h, w) // (4 * size))
    small = img[:h // f * f, :w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float64)
    energy = np.zeros_like(small)
    energy[:, :-1] += np.diff(small, axis=1) ** 2
    energy[:-1, :] += np.diff(small, axis=0) ** 2
    y, x = _best_offset(energy, max(1, wh // f), max(1, ww // f))
    return Window(min(y * f, h - wh), min(x * f, w - ww), wh, ww, "edge-energy crop", (h, w))


def apply_window(img: np.ndarray, window: Window) -> np.ndarray:
    """``(H, W)`` -> the ``(height, width)`` float32 pixels of ``window``."""
    if img.shape != window.image_shape:
        raise ValueError(f"window was chosen for a {window.image_shape} image, not {img.shape}")
    crop = img[window.y:window.y + window.height, window.x:window.x + window.width]
    return np.ascontiguousarray(crop, dtype=np.float32)


def pad_to_budget(window_pixels: np.ndarray, size: int) -> np.ndarray:
    """A window of at most ``size`` per side -> ``(size, size)``, reflect-padded symmetrically
    (the fixed input of an exported graph)."""
    h, w = window_pixels.shape
    if h > size or w > size:
        raise ValueError(f"window {h}x{w} is larger than the budget {size}")
    ph, pw = size - h, size - w
    return np.pad(window_pixels, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")


def budget_input(img: np.ndarray, size: int) -> tuple[np.ndarray, Window]:
    """The ``(size, size)`` float32 input of a graph exported at ``size`` for ``img``
    ``(H, W)``: :func:`select_window`, :func:`apply_window`, :func:`pad_to_budget`."""
    window = select_window(img, size)
    return pad_to_budget(apply_window(img, window), size), window
