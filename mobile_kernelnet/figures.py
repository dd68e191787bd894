"""Figures people look at instead of JSON."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .imio import atomic_output  # noqa: E402


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[y0:y0 + size, x0:x0 + size]


def sr_comparison(examples: list[tuple[str, np.ndarray, dict[str, np.ndarray]]], sf: int,
                  path: str | Path, crop: int = 128) -> None:
    """One row per example ``(stem, hr, {method: sr_image})``: centre crops of every
    method and of the HR original, written as PNG atomically."""
    methods = list(examples[0][2])
    fig, axes = plt.subplots(len(examples), len(methods) + 1, squeeze=False,
                             figsize=(2.2 * (len(methods) + 1), 2.4 * len(examples)))
    for row, (stem, hr, outputs) in zip(axes, examples):
        for ax, (title, img) in zip(row, [*outputs.items(), ("HR original", hr)]):
            ax.imshow(_crop(img, crop), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title.replace("sr:", "SR + "), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(stem, fontsize=8)
    fig.suptitle(f"sf {sf}: centre {crop}x{crop} crops", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
