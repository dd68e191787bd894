"""Where commands write their results, checked before any work starts.

The rules, the same in every command:

* ``--out`` of a command that writes one file per input (``estimate``) is a folder,
  created if missing; an existing file there is an error. Each input ``<dir>/<stem>.<ext>``
  gives ``<stem>.npy`` and ``<stem>.png``; when several inputs share a stem, each of them
  gets ``<stem>-<n>`` instead, ``n`` = 1, 2, ... in the order given (:func:`unique_stems`).
* ``--out`` of ``sr`` is an image file whose suffix picks the format
  (:data:`imio.IMAGE_SUFFIXES`), or a folder (an existing one, or a path ending in ``/``),
  which then receives ``<stem>_sr.png``. The kernel goes beside it as
  ``<out stem>_kernel.npy`` / ``.png``.
* No output may be one of the command's inputs (:func:`refuse_overwriting_inputs`):
  a user's file is never replaced.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .imio import check_image_output, write_npy, write_png


def unique_stems(paths: list[Path]) -> list[str]:
    """One output stem per input path, in order: the file's stem, or ``<stem>-<n>`` for
    every input whose stem is shared with another input."""
    counts, seen = Counter(p.stem for p in paths), Counter()
    stems = []
    for p in paths:
        seen[p.stem] += 1
        stems.append(p.stem if counts[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return stems


def refuse_overwriting_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """ValueError if any output path is (resolves to) one of the inputs."""
    given = {Path(p).resolve(): Path(p) for p in inputs}
    for out in outputs:
        if Path(out).resolve() in given:
            raise ValueError(f"output {out} would overwrite the input {given[Path(out).resolve()]}; "
                             f"choose another --out")


def output_folder(path: Path) -> Path:
    """``path`` as a results folder: created if missing; ValueError if it is a file."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path}: is an existing file; --out names a folder here")
    path.mkdir(parents=True, exist_ok=True)
    return path


def kernel_files(folder: Path, stem: str) -> tuple[Path, Path]:
    """The ``(stem.npy, stem.png)`` pair :func:`save_kernel_files` writes."""
    return folder / f"{stem}.npy", folder / f"{stem}.png"


def save_kernel_files(k: np.ndarray, folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.npy`` (``(K, K)`` float32 kernel) and ``stem.png`` (8x nearest-neighbour
    view scaled to its peak); both or neither (each atomic, the first removed if the
    second fails)."""
    npy, png = kernel_files(folder, stem)
    write_npy(npy, k.astype(np.float32))
    try:
        write_png(png, np.kron(k / k.max(), np.ones((8, 8))))
    except BaseException:
        npy.unlink(missing_ok=True)
        raise
    return npy, png


def sr_outputs(image: Path, out: str | Path) -> tuple[Path, str]:
    """``(SR image path, kernel stem)`` for ``mkn sr IMAGE --out OUT`` (rules above);
    checks the suffix and that nothing overwrites ``image``. The folder is created."""
    out_text = str(out)
    out = Path(out)
    if out.is_dir() or out_text.endswith(("/", "\\")):
        out = output_folder(out) / f"{image.stem}_sr.png"
    check_image_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{out.stem}_kernel"
    refuse_overwriting_inputs([out, *kernel_files(out.parent, stem)], [image])
    return out, stem
