"""The benchmark as people read it: a terminal table, a Markdown copy and a PNG plot."""
from __future__ import annotations

from pathlib import Path

from export.manifest import placement

COLUMNS = ("format", "runtime", "threads", "size", "status", "MB", "kernel L1", "median ms", "95% CI", "p90 ms",
           "FPS", "x floor", "GPU ops", "NPU partitions")


def _npu(r: dict) -> str:
    """``SM8350 x, SM8650 1``: partitions per SoC, ``x`` where the compile failed."""
    parts = r.get("npu_partitions")
    if not parts:
        return "-"
    return ", ".join(f"{t.split(':')[-1]} {'x' if n is None else n}" for t, n in parts.items())


def _row(r: dict) -> list[str]:
    ok = r.get("status") == "ok"

    def num(key: str, fmt: str) -> str:
        return format(r[key], fmt) if r.get(key) is not None else "-"
    return [r["format"], r["runtime"], str(r["threads"]), str(r["input_size"]), r.get("status", "?"),
            num("size_mb", ".3f"), num("kernel_l1", ".4f"),
            num("latency_ms_median", ".2f") if ok else "-",
            "{:.2f}-{:.2f}".format(*r["latency_ms_median_ci95"]) if ok and r.get("latency_ms_median_ci95") else "-",
            num("latency_ms_p90", ".2f") if ok else "-",
            f"{1e3 / r['latency_ms_median']:.1f}" if ok else "-", num("ratio_to_floor", ".1f") if ok else "-",
            f"{r['gpu_ops']}/{r['ops_total']}" if "gpu_ops" in r else "-", _npu(r)]


def _rows(records: list[dict]) -> list[list[str]]:
    """Header and rows; a ``device`` column first when the records come from phones."""
    phones = any(r.get("device") for r in records)
    return [(["device"] if phones else []) + list(COLUMNS)] + [
        ([r.get("device") or "-"] if phones else []) + _row(r) for r in records]


def table(records: list[dict]) -> str:
    """Fixed-width table in the spirit of ultralytics' ``benchmark`` output."""
    rows = _rows(records)
    left = 3 if len(rows[0]) > len(COLUMNS) else 2  # the text columns are left-aligned
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i >= left else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def markdown(records: list[dict], machine: dict) -> str:
    """The same table in Markdown, headed by the machine it ran on (and a warning when the
    run was marked busy)."""
    head = f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores\n\n"
    for reason in machine.get("check", {}).get("busy_reasons", []):
        head += f"**Busy machine, timings not trustworthy:** {reason}\n\n"
    rows = _rows(records)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return head + "\n".join(lines) + "\n"


def plot(records: list[dict], path: str | Path) -> None:
    """Two panels: median latency vs kernel L1 (largest size, most threads) and median
    latency vs input size (most threads), one marker/line per format and runtime."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobile_kernelnet.imio import atomic_output

    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        raise ValueError("no successful records to plot")
    nmax = max(r["threads"] for r in ok)
    smax = max(r["input_size"] for r in ok)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    for r in (r for r in ok if r["threads"] == nmax and r["input_size"] == smax and r.get("kernel_l1") is not None):
        a.scatter(r["latency_ms_median"], r["kernel_l1"], label=f"{r['format']} / {r['runtime']}")
    a.set(xlabel="median latency (ms)", ylabel="kernel L1 (test set)", xscale="log",
          title=f"latency vs kernel L1 ({smax}px, {nmax} threads)")
    a.legend(fontsize=7)
    series = sorted({(r["format"], r["runtime"]) for r in ok})
    for fmt, rt in series:
        pts = sorted((r["input_size"], r["latency_ms_median"]) for r in ok
                     if (r["format"], r["runtime"]) == (fmt, rt) and r["threads"] == nmax)
        b.plot(*zip(*pts), marker="o", label=f"{fmt} / {rt}")
    b.set(xlabel="input side (px)", ylabel="median latency (ms)", yscale="log",
          title=f"latency vs input size ({nmax} threads)")
    b.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_reports(records: list[dict], machine: dict, json_path: Path, with_plot: bool = True) -> str:
    """Write the Markdown table (and with ``with_plot`` the PNG plot) beside ``json_path``
    (atomically); returns the terminal table and a line naming the files."""
    from mobile_kernelnet.imio import atomic_output

    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    with atomic_output(md) as tmp:
        tmp.write_text(markdown(records, machine))
    if with_plot:
        plot(records, png)
    return f"{table(records)}\nwrote {', '.join(map(str, [json_path, md] + [png] * with_plot))}"


def placement_markdown(manifests: list[dict]) -> str:
    """Per TFLite file of each export manifest: ops on LiteRT's GPU accelerator and, per NPU
    target, the partitions (``x``: the compile failed; ``*``: ops left on the CPU)."""
    targets = list(dict.fromkeys(t for m in manifests for a in m["artifacts"].values() for t in a.get("npu", {})))
    head = ["model", "sf", "input", "file", "GPU ops"] + [t.split(":")[-1] for t in targets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in manifests:
        for fmt, art in m["artifacts"].items():
            if art["runtime"] != "litert":
                continue
            p = placement(art)
            gpu = f"{p['gpu_ops']}/{p['ops_total']}" if "gpu_ops" in p else "not checked"
            cells = []
            for t in targets:
                r = art.get("npu", {}).get(t)
                cells.append("-" if r is None else "x" if r["status"] != "compiled" else
                             f"{r['partitions']}{'' if r['fully_offloaded'] else '*'}")
            lines.append("| " + " | ".join([m["model"], str(m["sf"]), str(m["input_size"]), fmt, gpu, *cells]) + " |")
    return "\n".join(lines) + "\n"
