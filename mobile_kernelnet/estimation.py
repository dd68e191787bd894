"""Estimate blur kernels from LR images: the library call behind `mkn estimate`."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .budget import Window, apply_window, budget_for, budget_input, select_window
from .color import to_float
from .imio import InputError, read_image
from .kernels import kernel_size

if TYPE_CHECKING:
    import torch

MIN_SIDE_IN_KERNELS = 3
"""An LR image must be at least this many kernel widths ``K`` on its shorter side."""


class BadImageError(InputError):
    """The image cannot give a meaningful kernel (too small, constant, non-finite)."""


def check_image(img: np.ndarray, sf: int, source: str = "image") -> None:
    """Raise :class:`BadImageError` unless ``img`` (``(H, W)`` float) is finite, not
    constant and at least ``MIN_SIDE_IN_KERNELS * K`` pixels on each side."""
    if img.ndim != 2:
        raise BadImageError(f"{source}: expected a 2-D luma image, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise BadImageError(f"{source}: contains NaN or infinite pixels")
    need = MIN_SIDE_IN_KERNELS * kernel_size(sf)
    if min(img.shape) < need:
        raise BadImageError(f"{source}: {img.shape[1]}x{img.shape[0]} px is too small; "
                            f"sf {sf} needs at least {need} px per side "
                            f"({MIN_SIDE_IN_KERNELS} kernel widths of {kernel_size(sf)})")
    if float(img.max() - img.min()) < 1.0 / 255:
        raise BadImageError(f"{source}: image is constant; there is no blur to measure")


@lru_cache(maxsize=16)
def _model(name: str, sf: int, config: str | None):
    from .models import create_model
    return create_model(name, sf, config)


@dataclass(frozen=True)
class Estimate:
    """A kernel and where it came from: ``kernel`` ``(K, K)`` float32 (sum 1, HR pixels,
    centred at ``K // 2``), the pixels the estimator saw (:class:`budget.Window`) and the
    ``source`` (model name, or ``"<file> (<format>)"`` for an exported file)."""

    kernel: np.ndarray
    window: Window
    source: str


def _luma(image: np.ndarray | str | Path) -> tuple[np.ndarray, str]:
    if isinstance(image, (str, Path)):
        return read_image(image), str(image)
    return to_float(image, "image"), "image"


class KernelEstimator:
    """One estimator, loaded once and applied to many images (a Ray actor holds one).

    ``model`` / ``config``: a registered PyTorch model; or ``artifact``, a file written by
    `mkn export` (its manifest beside it), run in its runtime (``artifact_format``, if
    given, must be the format its manifest records for it). ``budget``: the LR window
    side (default :func:`budget.budget_for` of the model at ``sf``; an artifact uses its own input size,
    the window reflect-padded to it). Raises ValueError for an artifact of another sf or
    format, FileNotFoundError for a missing one.
    """

    def __init__(self, sf: int = 2, model: str = "kernelnet", config: str | None = None,
                 budget: int | None = None, artifact: str | Path | None = None,
                 artifact_format: str | None = None, threads: int | None = None):
        self.sf = sf
        if artifact is None:
            self.size, self.net, self.source = budget_for(sf, budget, model), _model(model, sf, config), model
            return
        from export.manifest import find_artifact
        from export.runtimes import open_runner

        artifact = Path(artifact)
        manifest, art = find_artifact(artifact)
        if artifact_format is not None and artifact_format != art.format:
            raise ValueError(f"{artifact} is the {art.format} artifact of its export, not {artifact_format}")
        if manifest.sf != sf:
            raise ValueError(f"{artifact} was exported for sf {manifest.sf}, not {sf}")
        self.size, self.net = manifest.input_size, None
        self.runner = open_runner(artifact.parent, manifest, art.format, threads)
        self.source = f"{artifact.name} ({art.format})"

    @classmethod
    def from_module(cls, net: torch.nn.Module, sf: int, source: str, budget: int | None = None) -> "KernelEstimator":
        """An estimator around a PyTorch module not (yet) in the registry, e.g. weights
        being trained: ``net`` maps ``(1, 1, H, W)`` LR to ``(1, 1, K, K)`` kernels; a
        ``source`` naming a registered model gets that model's default budget."""
        est = cls.__new__(cls)
        est.sf, est.size, est.net, est.source = sf, budget_for(sf, budget, source), net.eval(), source
        return est

    def __call__(self, image: np.ndarray | str | Path) -> Estimate:
        """Blur kernel of one LR image: a path, or an ``(H, W)`` luma array, uint8
        (0..255), uint16 (0..65535) or float in [0, 1] (anything else is refused, see
        :func:`color.to_float`). Raises :class:`BadImageError` /
        :class:`imio.ImageReadError` / :class:`color.ValueRangeError` on bad input."""
        img, source = _luma(image)
        check_image(img, self.sf, source)
        if self.net is not None:
            import torch
            window = select_window(img, self.size)
            with torch.inference_mode():
                k = self.net(torch.from_numpy(apply_window(img, window))[None, None])[0, 0].numpy()
            return Estimate(k.astype(np.float32), window, self.source)
        lr, window = budget_input(img, self.size)
        k = self.runner(lr[None, None])["kernel"][0, 0]
        return Estimate(np.asarray(k, np.float32), window, self.source)


def estimate_kernel(image: np.ndarray | str | Path, sf: int = 2, model: str = "kernelnet",
                    config: str | None = None, budget: int | None = None,
                    artifact: str | Path | None = None, artifact_format: str | None = None) -> Estimate:
    """Blur kernel of one LR image: :class:`KernelEstimator` ``(sf, model, config, budget,
    artifact, artifact_format)(image)`` (PyTorch models are loaded once per process)."""
    return KernelEstimator(sf, model, config, budget, artifact, artifact_format)(image)


def estimate_to_files(estimator: KernelEstimator, image: str | Path, out: Path, stem: str,
                      truth: np.ndarray | None = None) -> tuple[dict, Estimate | None]:
    """Estimate one image file and write ``out/<stem>.npy`` and ``.png``
    (:func:`outputs.save_kernel_files`); returns its record (image, kernel file, source,
    sf, window, centre of mass in px and, with ``truth`` ``(K, K)``, ``l1_vs_truth``) and
    the estimate — or ``({"image", "error"}, None)`` when the image (or writing) fails."""
    from .kernels import center_of_mass
    from .outputs import save_kernel_files

    try:
        est = estimator(image)
        npy, _ = save_kernel_files(est.kernel, out, stem)
    except (ValueError, OSError) as exc:  # BadImageError, ImageReadError, a wrong size or file
        return {"image": str(image), "error": str(exc)}, None
    record = {"image": str(image), "kernel_file": str(npy), "source": est.source, "sf": estimator.sf,
              "window": est.window.as_dict(), "centre_of_mass": list(center_of_mass(est.kernel))}
    if truth is not None:
        from .metrics import kernel_l1  # scipy.ndimage: 0.4 s of import, paid only with a truth
        record["l1_vs_truth"] = kernel_l1(est.kernel, truth)
    return record, est


def estimate(image: np.ndarray | str | Path, sf: int = 2, model: str = "kernelnet",
             config: str | None = None, budget: int | None = None) -> np.ndarray:
    """:func:`estimate_kernel`'s kernel alone: ``(K, K)`` float32."""
    return estimate_kernel(image, sf, model, config, budget).kernel
