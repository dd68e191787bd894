"""The one latency record that `mkn bench`, `mkn latency` and `mkn android bench` all write.

A :class:`BenchRecord` is one target (a format in one runtime, at one thread count and
input size, on this machine or on one phone) and what was measured of it. The fields
every producer fills have names here; what only one producer measures (a phone's
per-invocation medians, its delegate report, the ``benchmark_model`` command) goes to
:attr:`BenchRecord.extra` and is written beside them. Reports store records with
:meth:`BenchRecord.to_json` and read them back with :meth:`BenchRecord.from_json`, which
checks the fields the regression gate matches on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

KEY = ("model", "config", "sf", "format", "runtime", "threads", "input_size")
"""Fields that identify a record across runs (the regression gate matches on them, and the phone)."""
STATUSES = ("ok", "error", "not run")


@dataclass
class BenchRecord:
    """One timed target. Times in ms, sizes in MB (``size_mb``: the file, or the PyTorch
    weights; ``peak_memory_mb``: memory growth while it is created and first run);
    ``kernel_l1``: mean L1 against the test set's true kernels; ``flops`` / ``floor_ms`` /
    ``ratio_to_floor``: see :mod:`bench.roofline`; ``busy``: the run's machine check failed;
    ``latency_ms_median_ci95``: a 95 % interval of the median where repeated invocations
    give one (phones); ``gpu_ops`` / ``ops_total`` / ``npu_partitions``: the export's
    placement of the file."""

    model: str
    config: str
    sf: int
    format: str
    runtime: str
    threads: int
    input_size: int
    status: str = "not run"
    error: str | None = None
    device: str | None = None
    runs: int | None = None
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_median_ci95: list[float] | None = None
    first_inference_ms: float | None = None
    init_ms: float | None = None
    size_mb: float | None = None
    peak_memory_mb: float | None = None
    kernel_l1: float | None = None
    flops: int | None = None
    floor_ms: float | None = None
    ratio_to_floor: float | None = None
    busy: bool | None = None
    gpu_ops: int | None = None
    ops_total: int | None = None
    npu_partitions: dict[str, int | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple:
        """What makes two records comparable: :data:`KEY`, and the phone (``device``) if any."""
        return tuple(getattr(self, k) for k in KEY) + (self.device,)

    @property
    def name(self) -> str:
        """``tflite-int8/litert-xnnpack 2t 256px [on SERIAL]`` for messages."""
        return (f"{self.format}/{self.runtime} {self.threads}t {self.input_size}px"
                + (f" on {self.device}" if self.device else ""))

    def update(self, **values: Any) -> "BenchRecord":
        """Set fields by name; names that are not fields go to :attr:`extra`."""
        for k, v in values.items():
            if k in _FIELDS:
                setattr(self, k, v)
            else:
                self.extra[k] = v
        return self

    def to_json(self) -> dict:
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "extra" and (v is not None or k in KEY)}, **out["extra"]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "BenchRecord":
        """A record from its JSON; ValueError naming ``where`` when a :data:`KEY` field or
        the status is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a record must be a JSON object, got {type(data).__name__}")
        missing = [k for k in (*KEY, "status") if k not in data]
        if missing:
            raise ValueError(f"{where}: records lack {', '.join(missing)}")
        for k in ("sf", "threads", "input_size"):
            if not isinstance(data[k], int):
                raise ValueError(f"{where}: {k} must be an integer, got {data[k]!r}")
        if data["status"] not in STATUSES:
            raise ValueError(f"{where}: status {data['status']!r}, expected one of {STATUSES}")
        return cls(**{k: data[k] for k in KEY}).update(**{k: v for k, v in data.items() if k not in KEY})


_FIELDS = frozenset(f.name for f in fields(BenchRecord)) - {"extra"}
