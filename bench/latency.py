"""Latency measurement: medians of repeated runs (this machine is noisy; never one timing).

Records are :class:`bench.records.BenchRecord`, as `mkn bench` and `mkn android bench` write.
"""
from __future__ import annotations

import platform
import time
from functools import partial
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .records import BenchRecord

SCHEMA = "mkn-latency/1"


def time_callable(fn: Callable[[], object], runs: int = 20, warmup: int = 3) -> dict:
    """Call ``fn`` once (first-inference time), ``warmup`` more times, then ``runs`` timed
    times. Returns ``first_inference_ms``, ``latency_ms_median``, ``latency_ms_p90`` and ``runs``."""
    t0 = time.perf_counter()
    fn()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"first_inference_ms": first, "latency_ms_median": float(np.median(times)),
            "latency_ms_p90": float(np.percentile(times, 90)), "runs": runs}


def torch_eager_latency(model_name: str, configs: list[str], sf: int, sizes: list[int],
                        threads: list[int], runs: int, warmup: int) -> list[BenchRecord]:
    """PyTorch eager latency of each registered ``model_name`` config on ``size x size``
    LR inputs. Weights do not change the arithmetic, so untrained weights are used when
    a config has none shipped."""
    from mobile_kernelnet.models import create_model

    records = []
    jobs = [(c, s, t) for c in configs for s in sizes for t in threads]
    for config, size, nthreads in tqdm(jobs, desc="torch latency"):
        torch.set_num_threads(nthreads)
        try:
            model = create_model(model_name, sf, config)
            weights = "shipped"
        except FileNotFoundError:
            model = create_model(model_name, sf, config, pretrained=False)
            weights = "untrained"
        x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            stats = time_callable(partial(model, x), runs=runs, warmup=warmup)
        records.append(BenchRecord(model_name, config, sf, "pytorch", "torch-eager", nthreads, size)
                       .update(status="ok", weights=weights, **stats))
    return records


def machine_info() -> dict:
    """CPU, core count and library versions, stored beside every set of timings."""
    import os
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__}
