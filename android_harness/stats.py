"""Statistics over repeated ``benchmark_model`` invocations of one job.

``benchmark_model`` prints only summaries of its own runs (p5 / median / p95 in newer
builds), so the spread a phone team cares about -- between invocations, where thermal
state and scheduling differ -- comes from running the job several times: the record's
latency is the median of the invocations' medians, and its 95 % interval a percentile
bootstrap of that median over the invocations (:data:`BOOTSTRAP_RESAMPLES` resamples,
seeded, so a report is reproducible from its samples).
"""
from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_median_ci(samples: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` interval of the median of ``samples`` (ms)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, x.size, size=(BOOTSTRAP_RESAMPLES, x.size))], axis=1)
    lo, hi = np.percentile(medians, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def summarize(invocations: list[dict]) -> dict:
    """One record's timing fields from the parsed invocations (each with ``t_s``, seconds
    since the job started): median, p5 / p95 (medians of the tool's own), the interval,
    the per-invocation medians and, for three or more, the latency over time."""
    medians = [inv["latency_ms_median"] for inv in invocations]
    given = {key: [inv[key] for inv in invocations if inv.get(key) is not None]
             for key in ("latency_ms_p5", "latency_ms_p95", "latency_ms_avg", "peak_memory_mb")}
    lo, hi = bootstrap_median_ci(medians)
    first = invocations[0]
    out = {**{k: first[k] for k in ("init_ms", "first_inference_ms", "latency_stat", "delegates",
                                     "delegate_coverage", "runs")},
           "latency_ms_median": float(np.median(medians)), "latency_ms_median_ci95": [lo, hi],
           **{key: float(np.median(given[key])) if given[key] else None for key in ("latency_ms_p5", "latency_ms_p95")},
           "latency_ms_p90": None, "latency_ms_avg": float(np.mean(given["latency_ms_avg"])),
           "peak_memory_mb": max(given["peak_memory_mb"]) if given["peak_memory_mb"] else None,
           "invocations": len(invocations), "invocation_medians_ms": medians}
    if len(invocations) >= 3:
        out["over_time"] = [{"t_s": round(inv["t_s"], 2), "median_ms": inv["latency_ms_median"]}
                            for inv in invocations]
        quarter = max(1, len(medians) // 4)
        out["throttle_ratio"] = float(np.median(medians[-quarter:]) / np.median(medians[:quarter]))
    return out
