"""The benchmark as people read it: a terminal table, a Markdown copy and a PNG plot."""
from __future__ import annotations

from pathlib import Path

from export.manifest import Manifest, placement

from .records import BenchRecord

COLUMNS = ("format", "runtime", "threads", "size", "status", "MB", "kernel L1", "median ms", "95% CI", "p90 ms",
           "FPS", "x floor", "GPU ops", "NPU partitions")


def _npu(r: BenchRecord) -> str:
    """``SM8350 x, SM8650 1``: partitions per SoC, ``x`` where the compile failed."""
    parts = r.npu_partitions
    if not parts:
        return "-"
    return ", ".join(f"{t.split(':')[-1]} {'x' if n is None else n}" for t, n in parts.items())


def _row(r: BenchRecord) -> list[str]:
    def num(value: float | None, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"
    timed = r.ok
    return [r.format, r.runtime, str(r.threads), str(r.input_size), r.status, num(r.size_mb, ".3f"),
            num(r.kernel_l1, ".4f"), num(r.latency_ms_median, ".2f") if timed else "-",
            "{:.2f}-{:.2f}".format(*r.latency_ms_median_ci95) if timed and r.latency_ms_median_ci95 else "-",
            num(r.latency_ms_p90, ".2f") if timed else "-", f"{1e3 / r.latency_ms_median:.1f}" if timed else "-",
            num(r.ratio_to_floor, ".1f") if timed else "-",
            f"{r.gpu_ops}/{r.ops_total}" if r.gpu_ops is not None else "-", _npu(r)]


def _rows(records: list[BenchRecord]) -> list[list[str]]:
    """Header and rows; a ``device`` column first when the records come from phones."""
    phones = any(r.device for r in records)
    return [(["device"] if phones else []) + list(COLUMNS)] + [
        ([r.device or "-"] if phones else []) + _row(r) for r in records]


def table(records: list[BenchRecord]) -> str:
    """Fixed-width table in the spirit of ultralytics' ``benchmark`` output."""
    rows = _rows(records)
    left = 3 if len(rows[0]) > len(COLUMNS) else 2  # the text columns are left-aligned
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i >= left else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def markdown(records: list[BenchRecord], machine: dict) -> str:
    """The same table in Markdown, headed by the machine it ran on (and a warning when the
    run was marked busy)."""
    head = f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores\n\n"
    for reason in machine.get("check", {}).get("busy_reasons", []):
        head += f"**Busy machine, timings not trustworthy:** {reason}\n\n"
    rows = _rows(records)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return head + "\n".join(lines) + "\n"


def plot(records: list[BenchRecord], path: str | Path) -> None:
    """Two panels: median latency vs kernel L1 (largest size, most threads) and median
    latency vs input size (most threads), one marker/line per format and runtime."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobile_kernelnet.imio import atomic_output

    ok = [r for r in records if r.ok]
    if not ok:
        raise ValueError("no successful records to plot")
    nmax = max(r.threads for r in ok)
    smax = max(r.input_size for r in ok)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    for r in (r for r in ok if r.threads == nmax and r.input_size == smax and r.kernel_l1 is not None):
        a.scatter(r.latency_ms_median, r.kernel_l1, label=f"{r.format} / {r.runtime}")
    a.set(xlabel="median latency (ms)", ylabel="kernel L1 (test set)", xscale="log",
          title=f"latency vs kernel L1 ({smax}px, {nmax} threads)")
    a.legend(fontsize=7)
    series = sorted({(r.format, r.runtime) for r in ok})
    for fmt, rt in series:
        pts = sorted((r.input_size, r.latency_ms_median) for r in ok
                     if (r.format, r.runtime) == (fmt, rt) and r.threads == nmax)
        b.plot(*zip(*pts), marker="o", label=f"{fmt} / {rt}")
    b.set(xlabel="input side (px)", ylabel="median latency (ms)", yscale="log",
          title=f"latency vs input size ({nmax} threads)")
    b.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_reports(records: list[BenchRecord], machine: dict, json_path: Path, with_plot: bool = True) -> str:
    """Write the Markdown table (and with ``with_plot`` the PNG plot) beside ``json_path``
    (atomically); returns the terminal table and a line naming the files."""
    from mobile_kernelnet.imio import atomic_output

    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    with atomic_output(md) as tmp:
        tmp.write_text(markdown(records, machine))
    if with_plot:
        plot(records, png)
    return f"{table(records)}\nwrote {', '.join(map(str, [json_path, md] + [png] * with_plot))}"


def placement_markdown(manifests: list[Manifest]) -> str:
    """Per TFLite file of each export manifest: ops on LiteRT's GPU accelerator and, per NPU
    target, the partitions (``x``: the compile failed; ``*``: ops left on the CPU)."""
    targets = list(dict.fromkeys(t for m in manifests for a in m.artifacts.values() for t in a.npu))
    head = ["model", "sf", "input", "file", "GPU ops"] + [t.split(":")[-1] for t in targets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in manifests:
        for fmt, art in m.artifacts.items():
            if art.runtime != "litert":
                continue
            p = placement(art)
            gpu = f"{p['gpu_ops']}/{p['ops_total']}" if "gpu_ops" in p else "not checked"
            cells = []
            for t in targets:
                r = art.npu.get(t)
                cells.append("-" if r is None else "x" if r["status"] != "compiled" else
                             f"{r['partitions']}{'' if r['fully_offloaded'] else '*'}")
            lines.append("| " + " | ".join([m.model, str(m.sf), str(m.input_size), fmt, gpu, *cells]) + " |")
    return "\n".join(lines) + "\n"
