"""Per-tensor error of a full-integer (16x8) TFLite file against the fp32 file of the same
SavedModel: which tensor first leaves its calibrated range, or loses its resolution to it.

Both files are converted here from one ``onnx-matmul-int8`` file of an export folder (``mkn
export --to tflite-int16x8`` writes it), so their tensors share names; each LR image (a test
split's, fitted by :func:`budget.budget_input`) runs through both with every tensor kept, and
per int16 tensor the record holds the median and largest relative error ``|q - f| / |f|``
over the images, the largest ``|f|`` and the calibrated range ``(lo, hi)``: a range far wider
than ``|f|`` costs resolution, a narrower one clips. Calibration is the exporter's own
(:func:`calibration.calibration_images` with ``gratings=True``).

Usage: ``python tools/int16_tensor_dump.py EXPORT_DIR --testset testsets/sf4 [--images 12]
[--calibration-n 32] [--json OUT.json]``; prints the tensors over 2 % median error or clipped.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from export.calibration import calibration_images
from export.manifest import read_manifest
from export.tflite_formats import Conversion, TFLiteChain
from mobile_kernelnet.budget import budget_input
from mobile_kernelnet.imio import read_image, write_json


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    return it


def _run(it, x: np.ndarray) -> None:
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(np.float32))
    it.invoke()


def tensor_errors(fp32: Path, int16: Path, images: list[np.ndarray]) -> list[dict]:
    """Per int16 tensor of ``int16`` (in graph order): ``rel_median``, ``rel_max``, ``abs_max``
    (of the fp32 values) and ``range`` over ``images`` ``(S, S)`` float32 in [0, 1]."""
    f_it, q_it = _interpreter(fp32), _interpreter(int16)
    f_index = {d["name"]: d["index"] for d in f_it.get_tensor_details()}
    details = [d for d in q_it.get_tensor_details() if d["dtype"] == np.int16 and d["name"] in f_index
               and d["quantization"][0]]
    seen: dict[str, dict] = {}
    for x in images:
        _run(f_it, x)
        _run(q_it, x)
        for d in details:
            try:
                ref = f_it.get_tensor(f_index[d["name"]]).astype(np.float64)
                q = q_it.get_tensor(d["index"]).astype(np.float64)
            except ValueError:  # a constant folded away in one of the files
                continue
            if q.shape != ref.shape:
                continue
            scale, zero = d["quantization"]
            rel = float(np.linalg.norm((q - zero) * scale - ref) / (np.linalg.norm(ref) + 1e-12))
            rec = seen.setdefault(d["name"], {"index": int(d["index"]), "rel": [], "abs_max": 0.0,
                                              "range": [(-32768 - zero) * scale, (32767 - zero) * scale]})
            rec["rel"].append(rel)
            rec["abs_max"] = max(rec["abs_max"], float(np.abs(ref).max()))
    return [{"name": name, "index": r["index"], "rel_median": float(np.median(r["rel"])), "rel_max": max(r["rel"]),
             "abs_max": r["abs_max"], "range": r["range"]} for name, r in sorted(seen.items(), key=lambda kv: kv[1]["index"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--testset", type=Path, required=True, help="a test split folder, e.g. testsets/sf4")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--calibration-n", type=int, default=32)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    manifest = read_manifest(args.export_dir)
    source = next((a for a in manifest.artifacts.values() if a.format == "onnx-matmul-int8"), None)
    if source is None:
        ap.error(f"{args.export_dir} has no onnx-matmul-int8 file (export with --to tflite-int16x8)")
    entries = json.loads((args.testset / "manifest.json").read_text())["entries"]
    step = max(1, len(entries) // args.images)
    images = [budget_input(read_image(args.testset / e["lr_file"]), manifest.input_size)[0] for e in entries[::step]]
    with tempfile.TemporaryDirectory() as tmp:
        chain = TFLiteChain(args.export_dir / source.file, Path(tmp) / "scratch", Path(tmp) / "logs")
        lr, _ = calibration_images(manifest.sf, manifest.input_size, args.calibration_n, gratings=True)
        int16 = Path(tmp) / "int16x8.tflite"
        chain.convert(Conversion("int16x8", lr.transpose(0, 2, 3, 1)), int16)
        records = tensor_errors(chain.fp32(), int16, images)
    for r in records:
        clipped = r["abs_max"] > max(abs(v) for v in r["range"]) * 1.01
        if r["rel_median"] > 0.02 or clipped:
            print(f"{r['index']:5d} rel {r['rel_median']:.3f} (max {r['rel_max']:.3f})  |f| {r['abs_max']:.3g}  "
                  f"range {r['range'][1]:.3g}{'  CLIPS' if clipped else ''}  {r['name'][:80]}")
    if args.json:
        write_json({"export": str(args.export_dir), "images": len(images), "tensors": records}, args.json)


if __name__ == "__main__":
    main()
