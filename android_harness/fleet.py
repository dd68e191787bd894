"""`mkn android bench` on several phones at once: one worker per phone, one merged report.

Each phone runs :func:`device_bench.run_device_bench` in its own worker thread (the
work is adb subprocesses, so threads run in parallel). Every finished record carries
the phone's ``device`` serial and lands in the shared report at once, which the caller
saves atomically; a phone that fails (lost, hung, unauthorized, wrong ABI) is recorded
under ``devices`` with its error while the others go on, and its finished records stay.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

from bench.records import BenchRecord

from .adb import Adb
from .device_bench import run_device_bench
from .errors import AdbError, HarnessError


@dataclass
class FleetReport:
    """Per phone: its facts (or ``error``) and its records; :meth:`records` merges them."""

    devices: dict[str, dict] = field(default_factory=dict)
    by_device: dict[str, list[BenchRecord]] = field(default_factory=dict)

    def records(self) -> list[BenchRecord]:
        return [r for serial in self.by_device for r in self.by_device[serial]]

    @property
    def complete(self) -> bool:
        return all("error" not in d for d in self.devices.values()) and all(
            r.status != "not run" for r in self.records())

    def document(self, export_dir: str, complete: bool) -> dict:
        """The ``--json`` document (:data:`bench.benchmark.SCHEMA`): devices, records, and
        ``device`` too when there is one phone."""
        from bench.benchmark import SCHEMA

        one = next(iter(self.devices.values())) if len(self.devices) == 1 else None
        return {"schema": SCHEMA, "export": export_dir, "complete": complete, "devices": self.devices,
                **({"device": one} if one else {}), "records": [r.to_json() for r in self.records()]}

    def machine(self) -> dict:
        """The report header's machine facts: phone models / SoCs and core counts."""
        return {"cpu": ", ".join(f"{d.get('model')} / {d.get('soc')}" for d in self.devices.values()),
                "cores": "/".join(str(d.get("cpu_count")) for d in self.devices.values())}


def ready_serials(adb: Adb, serials: list[str] | None, all_devices: bool) -> list[str]:
    """The phones to run on: ``serials`` as given, every attached one in state ``device``
    with ``all_devices``, else the only one attached (:meth:`Adb.select`'s rules)."""
    if all_devices:
        ready = [d.serial for d in adb.devices() if d.state == "device"]
        if not ready:
            raise AdbError("--all-devices: no device is attached and ready (`mkn android devices` shows their states)")
        return ready
    if serials:
        return list(dict.fromkeys(serials))
    return [adb.select().serial]


def bench_fleet(adb: Adb, serials: list[str], on_change: Callable[[FleetReport], None] = lambda r: None,
                **bench_args) -> FleetReport:
    """:func:`device_bench.run_device_bench` (``bench_args``) on every phone of ``serials`` in
    parallel; ``on_change`` gets the report after every finished record (under a lock)."""
    report = FleetReport()
    lock = threading.Lock()

    def changed() -> None:
        with lock:
            on_change(report)

    def worker(serial: str) -> None:
        try:
            phone = adb.select(serial)
            report.devices[serial] = phone.facts()

            def on_record(records: list[BenchRecord]) -> None:
                report.by_device[serial] = [replace(r, device=serial, extra=dict(r.extra)) for r in records]
                changed()
            run_device_bench(phone, facts=report.devices[serial], on_record=on_record, **bench_args)
        except (AdbError, HarnessError) as exc:
            report.devices[serial] = {**report.devices.get(serial, {"serial": serial}),
                                      "error": f"{type(exc).__name__}: {exc}"}
            changed()

    with ThreadPoolExecutor(max_workers=len(serials), thread_name_prefix="phone") as pool:
        list(pool.map(worker, serials))
    return report
