"""Where an exported ONNX file spends its time: ONNX Runtime's per-node profile, summed per
op type, and the slowest nodes of ONNX Runtime's optimised graph with their input shapes (a
Conv's second input is its weight, ``(C_out, C_in / groups, kh, kw)``: a depthwise layer has
``C_in / groups`` = 1).

Each of ``--runs`` calls after ``--warmup`` is profiled; the numbers are medians per call.

    python tools/op_profile.py exports/kernelnet_mobile_sf2/kernelnet_mobile_sf2_256_matmul.onnx \
        --threads 2 --json results/op_profile_kernelnet_sf2_256.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mobile_kernelnet.imio import write_json

TOP_NODES = 15


def profile(path: Path, threads: int, runs: int, warmup: int) -> dict:
    """Per-call median microseconds per op type and of the :data:`TOP_NODES` slowest nodes,
    and the call's total."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], dtype=np.float32)
        for _ in range(warmup + runs):
            sess.run(None, {inp.name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    calls = [e for e in events if e.get("name") == "model_run"][warmup:]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    info = {e["name"].removesuffix("_kernel_time"): {"op": e["args"]["op_name"], "input_shapes": [
        next(iter(shape.values())) for shape in e["args"].get("input_type_shape", [])]} for e in nodes}
    per_type, per_node = [], []
    for call in calls:
        t0, t1 = call["ts"], call["ts"] + call["dur"]
        by_type, by_node = defaultdict(float), defaultdict(float)
        for e in nodes:
            if t0 <= e["ts"] <= t1:
                by_type[e["args"]["op_name"]] += e["dur"]
                by_node[e["name"].removesuffix("_kernel_time")] += e["dur"]
        per_type.append(by_type)
        per_node.append(by_node)
    med = lambda rows: {k: float(np.median([r.get(k, 0.0) for r in rows]))  # noqa: E731
                        for k in {k for r in rows for k in r}}
    by_type, by_node = med(per_type), med(per_node)
    top = sorted(by_node.items(), key=lambda kv: -kv[1])[:TOP_NODES]
    return {"file": str(path), "threads": threads, "runs": len(calls),
            "call_us_median": float(np.median([c["dur"] for c in calls])),
            "by_op_type_us": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
            "slowest_nodes": [{"node": n, "us": us, **info[n]} for n, us in top]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onnx", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    report = profile(a.onnx, a.threads, a.runs, a.warmup)
    write_json(report, a.json)
    print(f"{a.onnx.name}: {report['call_us_median'] / 1e3:.2f} ms per call ({a.threads} threads)")
    print("  by op type: " + ", ".join(f"{k} {v / 1e3:.2f}" for k, v in list(report["by_op_type_us"].items())[:10]))
    for n in report["slowest_nodes"]:
        print(f"  {n['node']:<32} {n['op']:<14} {n['us'] / 1e3:.2f} ms  inputs {n['input_shapes'][:2]}")

if __name__ == "__main__":
    main()
