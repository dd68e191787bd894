"""The project's test set: scikit-image gallery images degraded with known kernels.

Layout of ``OUT/sf{N}/`` (one folder per scale factor):

* ``<image>_<family>.png`` — the LR image, 8-bit gray PNG (BT.601 luma);
* ``<image>_<family>.npy`` — its ground-truth kernel, ``(K, K)`` float32, sum 1;
* ``manifest.json`` — schema :data:`MANIFEST_VERSION`: sf, seed, kernel size and per
  entry the gallery image, family, HR crop box, LR shape and sha256 of both files.

Each gallery image (:data:`gallery.TEST_IMAGES`) is centre-cropped to at most
504x504 (a multiple of 12, so every sf divides it), degraded once per family with
the noise-free model of :mod:`degrade`, and quantised to 8 bits. The kernel of
entry (image i, family j) is drawn from ``default_rng([seed, sf, i, j])``: the set
is the same on every machine with the same library versions.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .degrade import degrade_np
from .gallery import TEST_IMAGES, load_test_image
from .imio import read_image, write_npy, write_png
from .kernels import FAMILIES, kernel_size, random_kernel

MANIFEST_VERSION = 1
HR_MAX_SIDE = 504


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hr_crop_box(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(y0, x0, h, w)`` of the centred HR crop: at most 504 px, a multiple of 12."""
    h, w = (min(s, HR_MAX_SIDE) // 12 * 12 for s in shape)
    return (shape[0] - h) // 2, (shape[1] - w) // 2, h, w


def load_hr(image: str) -> np.ndarray:
    """The HR original of a test entry: ``(h, w)`` float32 luma in [0, 1]."""
    return crop_hr(load_test_image(image))


def crop_hr(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> the centred HR crop of :func:`hr_crop_box`."""
    y0, x0, h, w = hr_crop_box(img.shape)
    return img[y0:y0 + h, x0:x0 + w]


def make_testset(sf: int, out: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the sf ``sf`` test set to ``out/sf{sf}`` and return that folder.

    The set is built in a temporary sibling folder and renamed into place when
    complete. An existing set is kept unless ``overwrite``.
    """
    dest = Path(out) / f"sf{sf}"
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass --overwrite to rebuild it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".sf{sf}-", dir=dest.parent))
    try:
        entries = []
        for i, name in enumerate(TEST_IMAGES):
            full = load_test_image(name)
            hr, box = crop_hr(full), hr_crop_box(full.shape)
            for j, family in enumerate(FAMILIES):
                rng = np.random.default_rng([seed, sf, i, j])
                k = random_kernel(family, sf, rng)
                lr = degrade_np(hr, k, sf)
                stem = f"{name}_{family}"
                write_png(tmp / f"{stem}.png", lr)
                write_npy(tmp / f"{stem}.npy", k)
                entries.append({"stem": stem, "image": name, "family": family,
                                "hr_crop": list(box),
                                "lr_shape": list(lr.shape),
                                "sha256": {"png": sha256(tmp / f"{stem}.png"),
                                           "npy": sha256(tmp / f"{stem}.npy")}})
        manifest = {"version": MANIFEST_VERSION, "sf": sf, "seed": seed,
                    "kernel_size": kernel_size(sf), "noise_sigma": 0.0,
                    "decimation": "phase 0: y = (x*k)[::sf, ::sf], reflect boundary",
                    "entries": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


@dataclass(frozen=True)
class TestEntry:
    """One LR image of the test set with its ground truth."""

    stem: str
    image: str
    family: str
    lr_path: Path
    kernel_path: Path

    def lr(self) -> np.ndarray:
        """``(H, W)`` float32 LR luma in [0, 1]."""
        return read_image(self.lr_path)

    def kernel(self) -> np.ndarray:
        """``(K, K)`` float32 ground-truth kernel."""
        return np.load(self.kernel_path)


def load_testset(folder: str | Path, verify: bool = True) -> tuple[dict, list[TestEntry]]:
    """Read ``manifest.json`` of a set written by :func:`make_testset`; with ``verify``,
    check every file's sha256. Returns ``(manifest, entries)``."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; build it with `mkn make-testset`")
    manifest = json.loads(mpath.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{mpath}: manifest version {manifest.get('version')}, "
                         f"expected {MANIFEST_VERSION}")
    entries = []
    for e in manifest["entries"]:
        entry = TestEntry(e["stem"], e["image"], e["family"],
                          folder / f"{e['stem']}.png", folder / f"{e['stem']}.npy")
        if verify:
            for kind, path in (("png", entry.lr_path), ("npy", entry.kernel_path)):
                if not path.is_file() or sha256(path) != e["sha256"][kind]:
                    raise ValueError(f"{path}: missing or changed since the manifest was written")
        entries.append(entry)
    return manifest, entries
