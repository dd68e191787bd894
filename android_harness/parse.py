"""Parse what TensorFlow Lite's ``benchmark_model`` prints (fixtures: tests/fixtures/android).

The tool prints a ``count=`` line per phase (warm-up, then the timed runs; newer
builds add ``p5= median= p95=``), a summary ``Inference timings in us: Init: ...,
First inference: ..., Warmup (avg): ..., Inference (avg): ...``, a memory line
(``Memory footprint delta ... init= overall=``, ``Peak memory footprint (MB): init=
overall=``, or ``Overall peak memory footprint (MB) via periodic monitoring: X``) and,
per delegate applied, ``Replacing N out of M node(s) with delegate (NAME) node``.
"""
from __future__ import annotations

import re

_NUM = r"([0-9.]+(?:e[+-]?\d+)?)"
_SUMMARY = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_COUNT = re.compile(r"count=(\d+)(.*)")
_FIELD = re.compile(rf"(\w+)={_NUM}")
_DELEGATE = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_MEM_OVERALL = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
                          rf"\(MB\): init={_NUM} overall={_NUM}")


class BenchmarkOutputError(ValueError):
    """The output has no timing summary (the run failed or was cut short)."""


def parse_benchmark_model(text: str) -> dict:
    """Timings (ms), memory (MB) and delegate coverage from ``benchmark_model`` output.

    ``latency_ms_median`` is the tool's median when it prints one, else its mean
    (``latency_stat`` says which); ``latency_ms_p90`` is not printed by the tool
    (``None``); ``latency_ms_p5`` / ``latency_ms_p95`` are, by newer builds."""
    summary = _SUMMARY.search(text)
    if not summary:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise BenchmarkOutputError(f"benchmark_model printed no 'Inference timings' summary; last lines: {tail}")
    init, first, warmup, avg = (float(v) / 1e3 for v in summary.groups())
    runs = [dict(_FIELD.findall(m.group(2)), count=m.group(1)) for m in _COUNT.finditer(text)]
    timed = {k: float(v) for k, v in runs[-1].items()} if runs else {}
    median = timed.get("median")
    delegates = [{"delegate": name, "nodes": int(n), "of": int(m)} for n, m, name in _DELEGATE.findall(text)]
    peak = _MEM_PEAK.search(text)
    overall = _MEM_OVERALL.search(text)
    return {
        "init_ms": init, "first_inference_ms": first, "warmup_ms_avg": warmup, "latency_ms_avg": avg,
        "latency_ms_median": median / 1e3 if median is not None else avg,
        "latency_stat": "median" if median is not None else "mean (this benchmark_model prints no median)",
        "latency_ms_p90": None,
        "latency_ms_p5": timed["p5"] / 1e3 if "p5" in timed else None,
        "latency_ms_p95": timed["p95"] / 1e3 if "p95" in timed else None,
        "latency_ms_std": timed["std"] / 1e3 if "std" in timed else None,
        "runs": int(timed["count"]) if timed else None,
        "peak_memory_mb": float(peak.group(1)) if peak else (float(overall.group(2)) if overall else None),
        "delegates": delegates,
        "delegate_coverage": (max(d["nodes"] / d["of"] for d in delegates) if delegates else 0.0),
    }
