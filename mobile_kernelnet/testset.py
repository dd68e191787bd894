"""The project's test set: scikit-image gallery images degraded with known kernels.

Two splits per scale factor, each a folder (:func:`split_folder`):

* ``OUT/sf{N}/`` — the *clean* split: ``<image>_<family>.png``, the LR image as an
  8-bit gray PNG (BT.601 luma) degraded with the noise-free model of :mod:`degrade`;
* ``OUT/sf{N}-camera/`` — the *camera* split: ``<image>_<family>_<level>.jpg``, the
  same HR crop and kernel with the camera degradation of :mod:`camera` at each of
  :data:`camera.LEVELS` (low / medium / high noise and JPEG compression).

Beside every LR image its ground-truth kernel ``<stem>.npy`` (``(K, K)`` float32, sum 1)
and one ``manifest.json`` per folder (schema :data:`MANIFEST_VERSION`): sf, seed, split,
kernel size and per entry the gallery image, family, level (camera split: with its
``a``, ``b`` and JPEG quality), HR crop box, LR shape, LR file name and the sha256 of
both files.

Each gallery image (:data:`gallery.TEST_IMAGES`) is centre-cropped to at most
504x504 (a multiple of 12, so every sf divides it). The kernel of entry (image i,
family j) is drawn from ``default_rng([seed, sf, i, j])`` in both splits, the camera
noise of level l from ``default_rng([seed, sf, i, j, 1 + l])``: the sets are the same on
every machine with the same library versions.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .camera import LEVELS, CameraParams, encode_jpeg, sensor_np
from .degrade import degrade_np
from .gallery import TEST_IMAGES, load_test_image
from .imio import atomic_output, read_image, write_npy, write_png
from .kernels import FAMILIES, kernel_size, random_kernel

MANIFEST_VERSION = 2
SPLITS = ("clean", "camera")
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


def split_folder(out: str | Path, sf: int, split: str = "clean") -> Path:
    """The folder of one split: ``out/sf{sf}`` (clean) or ``out/sf{sf}-camera``."""
    if split not in SPLITS:
        raise ValueError(f"test split must be one of {SPLITS}, not {split!r}")
    return Path(out) / (f"sf{sf}" if split == "clean" else f"sf{sf}-{split}")


def require_testset(root: str | Path, sf: int, split: str = "clean") -> Path:
    """The split's folder under ``root``; FileNotFoundError with the exact command that
    builds it when it is missing (checked before a command starts its work)."""
    folder = split_folder(root, sf, split)
    if not (folder / "manifest.json").is_file():
        camera = " --camera" if split == "camera" else ""
        raise FileNotFoundError(f"no sf {sf} {split} test set in {folder}; build it with "
                                f"`mkn make-testset --sf {sf}{camera} --out {root}` (or `make testsets`)")
    return folder


def _write_lr(folder: Path, stem: str, lr: np.ndarray, params: CameraParams | None,
              rng: np.random.Generator | None) -> str:
    """Write one LR image (clean PNG, or the camera degradation as JPEG); its file name."""
    if params is None:
        write_png(folder / f"{stem}.png", lr)
        return f"{stem}.png"
    stored = sensor_np(lr, params, rng)
    with atomic_output(folder / f"{stem}.jpg") as tmp:
        tmp.write_bytes(encode_jpeg(stored, params.jpeg_quality))
    return f"{stem}.jpg"


def make_testset(sf: int, out: str | Path, seed: int = 0, overwrite: bool = False,
                 split: str = "clean") -> Path:
    """Write the sf ``sf`` test set's ``split`` to :func:`split_folder` and return it.

    The set is built in a temporary sibling folder and renamed into place when
    complete. An existing set is kept unless ``overwrite``.
    """
    dest = split_folder(out, sf, split)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass --overwrite to rebuild it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    levels = list(LEVELS.items()) if split == "camera" else [(None, None)]
    try:
        entries = []
        for i, name in enumerate(TEST_IMAGES):
            full = load_test_image(name)
            hr, box = crop_hr(full), hr_crop_box(full.shape)
            for j, family in enumerate(FAMILIES):
                k = random_kernel(family, sf, np.random.default_rng([seed, sf, i, j]))
                clean = degrade_np(hr, k, sf)
                for l, (level, params) in enumerate(levels):
                    stem = f"{name}_{family}" + (f"_{level}" if level else "")
                    rng = np.random.default_rng([seed, sf, i, j, 1 + l]) if params else None
                    lr_file = _write_lr(tmp, stem, clean, params, rng)
                    write_npy(tmp / f"{stem}.npy", k)
                    entries.append({"stem": stem, "image": name, "family": family, "level": level,
                                    **({"camera": asdict(params)} if params else {}),
                                    "hr_crop": list(box), "lr_shape": list(clean.shape), "lr_file": lr_file,
                                    "sha256": {"lr": sha256(tmp / lr_file), "npy": sha256(tmp / f"{stem}.npy")}})
        manifest = {"version": MANIFEST_VERSION, "sf": sf, "seed": seed, "split": split,
                    "kernel_size": kernel_size(sf),
                    "degradation": ("y = JPEG_q(quantise((x*k)[::sf, ::sf] + n)), Var n = a*s + b^2"
                                    if split == "camera" else "y = quantise((x*k)[::sf, ::sf]), no noise"),
                    "boundary": "reflect", "entries": entries}
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
    """One LR image of the test set with its ground truth (``level``: the camera split's
    level, ``None`` in the clean split)."""

    stem: str
    image: str
    family: str
    lr_path: Path
    kernel_path: Path
    level: str | None = None

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
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{mpath}: not valid JSON ({exc})") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{mpath}: manifest version {manifest.get('version')}, expected {MANIFEST_VERSION}; "
                         f"rebuild it with `mkn make-testset --overwrite`")
    entries = []
    for e in manifest["entries"]:
        entry = TestEntry(e["stem"], e["image"], e["family"], folder / e["lr_file"],
                          folder / f"{e['stem']}.npy", e.get("level"))
        if verify:
            for kind, path in (("lr", entry.lr_path), ("npy", entry.kernel_path)):
                if not path.is_file() or sha256(path) != e["sha256"][kind]:
                    raise ValueError(f"{path}: missing or changed since the manifest was written")
        entries.append(entry)
    return manifest, entries
