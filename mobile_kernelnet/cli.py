"""`mkn` — the one command-line entry point. Subcommand modules are imported lazily."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.formats import FORMATS

from .budget import BUDGETS, MODEL_BUDGETS, budget_for

if TYPE_CHECKING:
    from export.manifest import Artifact

SHADES = " .:-=+*#%@"
EXPORT_FORMATS = tuple(FORMATS)
"""The names of :data:`export.formats.FORMATS` (a module light enough for the parser)."""
DEFAULT_BUDGETS = (" / ".join(str(BUDGETS[sf]) for sf in sorted(BUDGETS)) + " at sf " + " / ".join(map(str, sorted(BUDGETS)))
                   + "".join(f"; {model} " + ", ".join(f"{side} at sf {sf}" for sf, side in sides.items())
                             for model, sides in MODEL_BUDGETS.items()))
"""The default LR window sides of :mod:`budget` (per sf, and the models' own), for help texts."""

EXIT_OK, EXIT_INPUT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Exit codes of every command: 0 all done; 1 some inputs (images, runs, formats) failed
and the rest were done; 2 a usage error or a bad non-input file (a kernel, manifest,
baseline or model file), nothing done; 130 interrupted, finished results kept."""


class ListOption(argparse.Action):
    """``--opt a,b``, ``--opt a b`` and ``--opt a,b c`` all give ``[a, b(, c)]``: the values
    are split at commas, converted with ``item_type`` and checked against ``choices``."""

    def __init__(self, option_strings, dest, item_type=str, choices=None, **kwargs):
        self.item_type, self.allowed = item_type, choices
        super().__init__(option_strings, dest, nargs="+", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        items = []
        for text in (v for chunk in values for v in chunk.split(",") if v):
            try:
                item = self.item_type(text)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"argument {option_string}: {exc}")
            except (TypeError, ValueError):
                parser.error(f"argument {option_string}: invalid value {text!r}")
            if self.allowed is not None and item not in self.allowed:
                parser.error(f"argument {option_string}: invalid choice {text!r} "
                             f"(choose from {', '.join(map(str, self.allowed))})")
            items.append(item)
        setattr(namespace, self.dest, items)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def npu_targets(text: str) -> list:
    """argparse type: NPU targets (:func:`export.npu.parse_targets`)."""
    from export.npu import parse_targets
    try:
        return parse_targets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def duration(text: str) -> float:
    """argparse type: seconds, ``90``, ``90s`` or ``2m``; > 0."""
    value = text.strip().lower()
    try:
        seconds = float(value[:-1]) * 60 if value.endswith("m") else float(value.rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a duration like 60s or 2m, got {text!r}")
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return seconds


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def kernel_as_text(k: np.ndarray) -> str:
    """A kernel drawn with characters, darkest = largest tap (for terminals)."""
    levels = np.round(k / k.max() * (len(SHADES) - 1)).astype(int)
    return "\n".join(" ".join(SHADES[v] for v in row) for row in levels)


def estimator_choice(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(model name, config)`` of :func:`add_estimator_options`' arguments; a usage error
    (ValueError) for ``--format`` without ``--model-file`` or an unknown model, before any image."""
    if (args.format is None) != (args.model_file is None):
        raise ValueError("--format and --model-file go together")
    if args.format:  # the exported file is the estimator; PyTorch is not loaded
        return args.model, args.config
    from .models.registry import model_entry, parse_model_spec

    name, config = parse_model_spec(args.model)
    model_entry(name)
    return name, args.config or config


def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimation import KernelEstimator, estimate_to_files
    from .imio import write_json
    from .kernels import read_kernel
    from .outputs import kernel_files, output_folder, refuse_overwriting_inputs, unique_stems

    name, config = estimator_choice(args)
    truth = read_kernel(args.truth, args.sf) if args.truth else None
    stems = unique_stems(args.images)
    refuse_overwriting_inputs([f for st in stems for f in kernel_files(args.out, st)] + ([args.json] if args.json else []),
                              args.images)
    output_folder(args.out)
    estimator = KernelEstimator(args.sf, name, config, args.budget, args.model_file, args.format)
    records, failures = [], 0
    for path, stem in zip(args.images, stems):
        record, est = estimate_to_files(estimator, path, args.out, stem, truth)
        records.append(record)
        failures += est is None
        print(f"error: {record['error']}" if est is None else estimate_line(record, est),
              file=sys.stderr if est is None else sys.stdout)
        if est is not None and args.show:
            print(kernel_as_text(est.kernel))
    if args.json:
        write_json({"schema": "mkn-estimate/1", "records": records}, args.json)
    return EXIT_INPUT_FAILED if failures else EXIT_OK


def estimate_line(record: dict, est) -> str:
    """The output line of one estimated image."""
    (cy, cx), k = record["centre_of_mass"], est.kernel
    line = (f"{record['image']}: {est.source} sf{record['sf']} kernel {k.shape[0]}x{k.shape[1]} from the "
            f"{est.window.describe()}, centre of mass ({cy:.2f}, {cx:.2f}) -> {record['kernel_file']}")
    return line + (f"  L1 vs truth {record['l1_vs_truth']:.4f}" if "l1_vs_truth" in record else "")


def cmd_estimate_collection(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from export.manifest import sha256

    from .collection import CollectionRun, estimate_collection

    name, config = estimator_choice(args)
    run = CollectionRun(args.sf, name, config, args.budget,
                        str(args.model_file.resolve()) if args.model_file else None,
                        sha256(args.model_file) if args.model_file else None, args.format)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, desc=args.out.name, unit="img", mininterval=2, disable=args.quiet)
        bar.update(done - bar.n)

    try:
        summary = estimate_collection(args.src, args.out, run, args.address, args.workers, progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted; the finished parts of {args.out} are kept (a re-run resumes)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.out}: {summary.listed} images, {summary.skipped} done before, {summary.estimated} estimated now "
          f"({summary.failed} failed: see the error column) on {summary.workers} workers")
    return EXIT_INPUT_FAILED if summary.failed else EXIT_OK


def cmd_pool_build(args: argparse.Namespace) -> int:
    from .pool_build import build_pool

    r = build_pool(args.estimates, args.out, args.filter)
    shares = ", ".join(f"{name} {share:.0%}" for name, share in r.family_like.items())
    print(f"{args.out}: {r.kernels} sf{r.sf} kernels of {r.rows} rows ({r.failed} failed, {r.filtered_out} "
          f"filtered out); mean width {r.mean_width:.2f} px, median anisotropy {r.median_anisotropy:.2f}; "
          f"{shares}; report {args.out.with_suffix('.json')}, grid {args.out.with_suffix('.png')}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from export.exporter import ExportError, export


    try:
        manifest = export(args.model, args.config, args.sf, budget_for(args.sf, args.input_size, args.model), args.to, args.out,
                          overwrite=args.overwrite, calibration_n=args.calibration_images, npu=args.npu)
    except ExportError as exc:
        print(f"mkn export: error: {exc}", file=sys.stderr)
        return 1 if args.out.exists() else 2
    for fmt, art in manifest.artifacts.items():
        nodes = (f", nodes {art.details['nodes_before_onnxsim']} -> {art.details['nodes_after_onnxsim']} (onnxsim)"
                 if "nodes_after_onnxsim" in art.details else "")
        print(f"{fmt:<21} {art.file:<44} {art.size_bytes / 1e6:7.3f} MB{nodes}{placement_note(art)}")
    for fmt, why in manifest.unsupported.items():
        print(f"{fmt:<21} not exported: {why}")
    print(f"wrote {args.out / 'manifest.json'}")
    return 0


def placement_note(art: Artifact) -> str:
    """``, GPU 157/157 ops, qualcomm:SM8650 1 partition ...`` for a TFLite artifact."""
    note = ""
    if gpu := art.gpu:
        note += (f", GPU {gpu['ops_gpu']}/{gpu['ops_total']} ops" if gpu["status"] == "checked"
                 else f", GPU not checked ({gpu['error'].splitlines()[0]})")
    for target, r in art.npu.items():
        note += (f", {target} {r['ops_offloaded']}/{r['ops_total']} ops in {r['partitions']} partition(s)"
                 if r["status"] == "compiled" else f", {target} FAILED (see {r['log']})")
    return note


def require_export_testset(export_dir: Path, testset: Path) -> None:
    """Stop before any work when ``testset`` lacks the set for the export's sf (see
    :func:`testset.require_testset`)."""
    from export.manifest import read_manifest
    from .testset import require_testset
    require_testset(testset, read_manifest(export_dir, verify=False).sf)


def cmd_parity(args: argparse.Namespace) -> int:
    from export.parity import DEFAULT_TOLERANCES, format_parity_table, parse_tolerance, run_parity
    from .imio import write_json

    tolerances = DEFAULT_TOLERANCES
    for spec in args.tol or []:
        tolerances = parse_tolerance(spec, tolerances)
    require_export_testset(args.dir, args.testset)
    report = run_parity(args.dir, args.testset, args.formats, tolerances, args.images, gpu=not args.no_gpu)
    print(format_parity_table(report))
    json_path = args.json or args.dir / "parity.json"
    write_json(report, json_path)
    print(f"wrote {json_path}")
    failed = [r["format"] for r in report["formats"] if r["status"] != "pass"]
    if failed:
        print(f"mkn parity: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.benchmark import bench_document, load_baseline, run_bench
    from bench.latency import machine_info
    from bench.report import write_reports
    from export.manifest import tool_versions
    from .imio import write_json

    baseline = load_baseline(args.baseline) if args.baseline else None
    require_export_testset(args.dir, args.testset)
    machine = {**machine_info(), "tools": tool_versions()}
    records: list = []

    def save(complete: bool) -> None:
        write_json(bench_document(machine, args.dir, complete, records), args.json)

    def on_group(group: list) -> None:
        records.extend(group)
        save(False)

    try:
        records[:], machine["check"] = run_bench(args.dir, args.sizes, args.threads, args.runs, args.warmup,
                                                 args.testset, args.images, on_group, progress=not args.quiet)
    except KeyboardInterrupt:
        save(False)
        print(f"\ninterrupted: kept {len(records)} finished records in {args.json} (complete: false)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    save(True)
    for reason in machine["check"]["busy_reasons"]:
        print(f"mkn bench: WARNING: machine busy, timings marked busy: {reason}", file=sys.stderr)
    print(write_reports(records, machine, args.json))
    if baseline is None:
        return EXIT_INPUT_FAILED if any(not r.ok for r in records) else EXIT_OK
    return regression_gate(records, baseline, args.baseline, args.max_slowdown, args.max_l1_increase)


def regression_gate(records: list, baseline: list, name: Path, max_slowdown: float,
                    max_l1_increase: float) -> int:
    """Compare ``records`` with the ``baseline`` records (from file ``name``), print what
    regressed; exit status 1 on a regression or when nothing matches, else 0."""
    from bench.benchmark import compare

    gate = compare(records, baseline, max_slowdown, max_l1_increase)
    if gate["matched"] == 0:
        print(f"mkn: error: no record matches the baseline {name}", file=sys.stderr)
        return 1
    for line in gate["regressions"]:
        print(f"REGRESSION {line}", file=sys.stderr)
    print(f"gate: {gate['matched']} records compared with {name}, {len(gate['regressions'])} regression(s)")
    return 1 if gate["regressions"] else 0


def cmd_android_devices(args: argparse.Namespace) -> int:
    from android_harness.adb import Adb, AdbError

    try:
        devices = Adb(args.adb).devices()
    except AdbError as exc:
        print(f"mkn android devices: error: {exc}", file=sys.stderr)
        return 2
    if not devices:
        print("no devices attached")
        return 1
    for d in devices:
        print(f"{d.serial:<24} {d.state:<13} {' '.join(f'{k}:{v}' for k, v in d.details.items())}")
    return 0


def cmd_android_bench(args: argparse.Namespace) -> int:
    from android_harness.adb import Adb
    from android_harness.errors import AdbError
    from android_harness.fleet import bench_fleet, ready_serials
    from bench.benchmark import load_baseline
    from bench.report import write_reports
    from .imio import write_json

    baseline = load_baseline(args.baseline) if args.baseline else None
    save = lambda report, complete: write_json(report.document(str(args.dir), complete), args.json)  # noqa: E731
    try:
        adb = Adb(args.adb, timeout_s=args.timeout)
        report = bench_fleet(adb, ready_serials(adb, args.serial, args.all_devices), lambda r: save(r, False),
                             export_dir=args.dir, binary=args.benchmark_binary, delegates=args.delegates,
                             threads=args.threads, cores=args.cores, runs=args.runs, warmup=args.warmup,
                             timeout_s=args.timeout, keep=args.keep, repeats=args.repeats,
                             cooldown_s=args.cooldown, sustained_s=args.sustained)
    except AdbError as exc:
        print(f"mkn android bench: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_FAILED
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished records kept in {args.json}", file=sys.stderr)
        return EXIT_INTERRUPTED
    records = report.records()
    if records or report.devices:
        save(report, report.complete)
    print_devices(report, args.json)
    if not records:
        return EXIT_INPUT_FAILED
    print(write_reports(records, report.machine(), args.json, with_plot=False))
    failed = [r for r in records if not r.ok]
    if failed:
        print(f"mkn android bench: {len(failed)} of {len(records)} runs failed; first: {failed[0].name}: "
              f"{failed[0].error}", file=sys.stderr)
    if baseline is not None and regression_gate(records, baseline, args.baseline, args.max_slowdown, 0.01):
        return EXIT_INPUT_FAILED
    return EXIT_INPUT_FAILED if failed or not report.complete else EXIT_OK


def print_devices(report, json_path: Path) -> None:
    """One line per phone of a fleet report: its facts, or its error and what was kept."""
    for serial, d in report.devices.items():
        if "error" not in d:
            print(f"device {serial}: {d['model']} ({d['soc']}, {d['abi']}, Android {d['android']})")
            continue
        print(f"mkn android bench: error: {serial}: {d['error']}", file=sys.stderr)
        if report.by_device.get(serial):
            print(f"kept {sum(r.ok for r in report.by_device[serial])} finished records of "
                  f"{serial} in {json_path}; the others are marked error / not run", file=sys.stderr)


def cmd_android_parity(args: argparse.Namespace) -> int:
    from android_harness.adb import Adb, AdbError
    from android_harness.errors import HarnessError
    from android_harness.device_parity import run_device_parity
    from export.parity import DEFAULT_TOLERANCES, format_parity_table, parse_tolerance
    from .imio import write_json

    tolerances = DEFAULT_TOLERANCES
    for spec in args.tol or []:
        tolerances = parse_tolerance(spec, tolerances)
    require_export_testset(args.dir, args.testset)
    try:
        adb = Adb(args.adb, timeout_s=args.timeout).select(args.serial)
        report = run_device_parity(adb, args.dir, args.runner_binary, args.testset, args.delegates, args.threads,
                                   args.images, tolerances, args.timeout, args.keep)
    except (AdbError, HarnessError) as exc:
        print(f"mkn android parity: error: {exc}", file=sys.stderr)
        return 1
    print(f"device: {report['device']['model']} ({report['device']['abi']})")
    print(format_parity_table(report))
    write_json(report, args.json)
    print(f"wrote {args.json}")
    failed = [r["format"] for r in report["formats"] if r["status"] != "pass"]
    if failed:
        print(f"mkn android parity: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_sr(args: argparse.Namespace) -> int:
    from .color import to_gray
    from .estimation import check_image, estimate
    from .imio import load_image, write_image
    from .kernels import read_kernel
    from .models.registry import model_entry, parse_model_spec
    from .outputs import save_kernel_files, sr_outputs
    from .sr import sr_config, super_resolve_tiled

    out, kernel_stem = sr_outputs(args.image, args.out)
    k = read_kernel(args.kernel, args.sf) if args.kernel is not None else None
    name, config = parse_model_spec(args.model)
    if k is None:
        model_entry(name)
    image = load_image(args.image)
    luma = to_gray(image.pixels)
    check_image(luma, args.sf, str(args.image))
    source = str(args.kernel) if k is not None else args.model
    if k is None:
        k = estimate(luma, sf=args.sf, model=name, config=config)
    sr = super_resolve_tiled(image.pixels, k, args.sf, sr_config(args.noise_aware), out_dtype=np.uint16 if image.bits == 16 else np.uint8,
                             progress=not args.quiet)
    npy, _ = save_kernel_files(k, out.parent, kernel_stem)
    write_image(out, sr)
    print(f"{args.image}: sf{args.sf} SR with the {source} kernel -> {out} ({sr.shape[1]}x{sr.shape[0]}), "
          f"kernel -> {npy}")
    return EXIT_OK


def cmd_make_testset(args: argparse.Namespace) -> int:
    from .testset import make_testset

    for sf in args.sf:
        for split in ("clean", "camera") if args.camera else ("clean",):
            dest = make_testset(sf, args.out, seed=args.seed, overwrite=args.overwrite, split=split)
            print(f"wrote {dest}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import (SCHEMA, SCHEMA_SR, backend_agreement, evaluate_kernels, evaluate_sr, format_sr_table,
                           format_table)
    from .imio import write_json
    from .error_budget import SCHEMA as BUDGET_SCHEMA, error_budget, format_budget
    from .sr import sr_config
    from .testset import require_testset

    def score_kernels(sf: int, folder: Path) -> dict:
        res = evaluate_kernels(args.models, folder, progress=not args.quiet)
        if args.check_backends:
            res["backend_agreement"] = [c for c in (backend_agreement(m, folder) for m in args.models) if c]
        return res

    def score_sr(sf: int, folder: Path) -> dict:
        figure = args.json.with_name(f"{args.json.stem}_{folder.name}.png") if args.json else None
        return evaluate_sr(args.models, folder, figure=figure, progress=not args.quiet,
                           config=sr_config(args.noise_aware))

    def score_budget(sf: int, folder: Path) -> dict:
        return error_budget(folder, config=args.config)

    if args.sr and args.error_budget:
        raise ValueError("choose one of --sr and --error-budget")
    score, fmt, schema = ((score_sr, format_sr_table, SCHEMA_SR) if args.sr else
                          (score_budget, format_budget, BUDGET_SCHEMA) if args.error_budget else
                          (score_kernels, format_table, SCHEMA))
    folders = {sf: require_testset(args.testset, sf, args.split) for sf in args.sf}
    results = []
    for sf in args.sf:
        results.append(score(sf, folders[sf]))
        print(fmt(results[-1]) + "\n")
    if args.json:
        write_json({"schema": schema, "results": results}, args.json)
        print(f"wrote {args.json}" + (" and its figures" if args.sr else ""))
    return 0


def cmd_tune_sr(args: argparse.Namespace) -> int:
    from .imio import write_json
    from .sr_tuning import CAMERA_GRID, CLEAN_GRID, format_sweep, sweep

    grid = CAMERA_GRID if args.camera else CLEAN_GRID
    report = sweep(args.sf, args.models, grid=grid, camera=args.camera, progress=not args.quiet)
    print(format_sweep(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from .train import CLI_OPTIONS, TrainConfig, train

    overrides = {k: getattr(args, k) for k in CLI_OPTIONS if getattr(args, k) is not None}
    cfg = TrainConfig(model=args.model, sf=args.sf, config=args.config, **overrides)
    out = args.out or Path("runs") / f"{cfg.shipped_name}_{args.config}_sf{args.sf}"
    val = train(cfg, out, resume=args.resume, ship=args.ship)
    if val:  # rank 0 (the only one, outside torchrun)
        print(f"{out}: validation kernel L1 {val['val_l1']:.4f}")
    return EXIT_OK


def cmd_placement(args: argparse.Namespace) -> int:
    from bench.report import placement_markdown
    from export.manifest import read_manifest

    print(placement_markdown([read_manifest(d) for d in args.dirs]), end="")
    return EXIT_OK


def cmd_ship_check(args: argparse.Namespace) -> int:
    from .imio import write_json
    from .ship_check import ship_check

    report = ship_check(args.run, args.within)
    print(f"{report['model']} {report['config']} sf{report['sf']}: {args.run} vs the shipped weights "
          f"({report['rule']} rule)")
    for name, c in report["criteria"].items():
        ci = "  95% CI [{:+.4f}, {:+.4f}]".format(*c["difference_95ci"]) if "difference_95ci" in c else ""
        print(f"  {name:<24} run {c['run']:.4f}  shipped {c['shipped']:.4f}{ci}  {'pass' if c['pass'] else 'FAIL'}")
    by_family = report["natural_by_family"]
    print("  natural set by family, run / shipped / fixed-gaussian (information, not a criterion):")
    for split, families in by_family["run"].items():
        print(f"    {split:<7}" + "  ".join(f"{f} {l1:.3f} / {by_family['shipped'][split][f]:.3f} / "
                                          f"{by_family['fixed-gaussian'][split][f]:.3f}" for f, l1 in families.items()))
    print("ship" if report["ship"] else "do not ship")
    write_json(report, args.run / "ship_check.json")
    return EXIT_OK if report["ship"] else EXIT_INPUT_FAILED


def cmd_latency(args: argparse.Namespace) -> int:
    from bench.latency import SCHEMA, machine_info, torch_eager_latency
    from .imio import write_json

    records = [r for model in args.models
               for r in torch_eager_latency(model, args.configs, args.sf, args.sizes, args.threads,
                                            args.runs, args.warmup)]
    print(f"{'model':<10} {'config':<7} {'sf':>2} {'threads':>7} {'size':>5} {'median ms':>10} {'p90 ms':>8}")
    for r in records:
        print(f"{r.model:<10} {r.config:<7} {r.sf:>2} {r.threads:>7} {r.input_size:>5} "
              f"{r.latency_ms_median:>10.2f} {r.latency_ms_p90:>8.2f}")
    if args.json:
        write_json({"schema": SCHEMA, "machine": machine_info(), "records": [r.to_json() for r in records]},
                   args.json)
        print(f"wrote {args.json}")
    return 0


def add_estimate_parser(sub) -> None:
    """`mkn estimate`."""
    e = sub.add_parser("estimate", help="estimate the blur kernel of LR images")
    e.add_argument("images", nargs="+", type=Path, help="PNG/JPEG/TIFF, 8/16 bit, gray/RGB/RGBA")
    add_estimator_options(e)
    e.add_argument("--out", type=Path, required=True,
                   help="folder for <stem>.npy and <stem>.png (<stem>-<n> when inputs share a stem)")
    e.add_argument("--truth", type=Path, help="ground-truth kernel .npy: also print the L1 error")
    e.add_argument("--show", action="store_true", help="draw each kernel in the terminal")
    e.add_argument("--json", type=Path, help="also write one record per image (kernel file, window used, errors)")
    e.set_defaults(func=cmd_estimate)


def add_estimator_options(parser: argparse.ArgumentParser) -> None:
    """What estimates: ``--sf``, ``--model``/``--config`` or ``--format`` + ``--model-file``, ``--budget``."""
    parser.add_argument("--sf", type=int, choices=(2, 3, 4), required=True, help="scale factor")
    parser.add_argument("--model", default="kernelnet", help="registered model name, optionally name:config")
    parser.add_argument("--config", default=None, help="model config (default: the model's first)")
    parser.add_argument("--format", choices=EXPORT_FORMATS,
                        help="run an exported file instead of the PyTorch model (needs --model-file); it sees "
                             "the same window, padded to its input size")
    parser.add_argument("--model-file", type=Path, help="an artifact of `mkn export` (its manifest.json beside it)")
    parser.add_argument("--budget", type=positive_int,
                        help=f"LR window side the estimator sees (default: {DEFAULT_BUDGETS}; see budget.py)")


def add_estimate_collection_parser(sub) -> None:
    """`mkn estimate-collection`."""
    ec = sub.add_parser("estimate-collection", help="estimate kernels over a photo collection on Ray (Parquet out)")
    ec.add_argument("src", help="a folder, a glob, a list file (.txt/.lst, one path or URI per line), or a URI "
                                "folder (any scheme pyarrow.fs reads: s3://, gs://, ...)")
    add_estimator_options(ec)
    ec.add_argument("--out", type=Path, required=True,
                    help="output Parquet dataset (a folder); a re-run with the same settings resumes it")
    ec.add_argument("--address", help="join this Ray cluster (default: start a local Ray with this machine's cores)")
    ec.add_argument("--workers", type=positive_int, help="estimator actors (default: the cluster's CPUs)")
    ec.add_argument("--quiet", action="store_true", help="no progress bar")
    ec.set_defaults(func=cmd_estimate_collection)


def command_group(sub, name: str, help: str):
    """A command with subcommands (``mkn NAME SUBCOMMAND``); returns their subparsers."""
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True)


def add_pool_parser(sub) -> None:
    """`mkn pool`."""
    psub = command_group(sub, "pool", "kernel pools for training")
    pb = psub.add_parser("build", help="a training pool from `mkn estimate-collection` output (+ report, PNG)")
    pb.add_argument("estimates", type=Path, help="an estimate-collection output folder")
    pb.add_argument("--filter", help="keep rows matching this pandas query, e.g. \"iso < 800\"")
    pb.add_argument("--out", type=Path, required=True, help="pool file (.npz); report .json and grid .png beside it")
    pb.set_defaults(func=cmd_pool_build)


def add_export_parser(sub) -> None:
    """`mkn export`."""
    x = sub.add_parser("export", help="export an estimator to ONNX / TFLite formats (+ manifest.json)")
    x.add_argument("--model", default="kernelnet")
    x.add_argument("--config", default="mobile")
    x.add_argument("--sf", type=int, choices=(2, 3, 4), required=True)
    x.add_argument("--input-size", type=int, default=None,
                   help=f"LR input side the files are fixed to (px; default: the model's budget at the sf, "
                        f"{DEFAULT_BUDGETS})")
    x.add_argument("--to", action=ListOption, default=["all"], choices=("all", *EXPORT_FORMATS), metavar="FORMAT",
                   help=f"formats: all or any of {', '.join(EXPORT_FORMATS)}")
    x.add_argument("--out", type=Path, required=True, help="export directory (built aside, renamed when done)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    x.add_argument("--calibration-images", type=int, default=32, help="int8 calibration images (training sources)")
    x.add_argument("--npu", type=npu_targets, metavar="VENDOR:SOC,...",
                   help="also AOT-compile every TFLite file for these NPUs, e.g. qualcomm:SM8350,SM8550,SM8650,SM8750")
    x.set_defaults(func=cmd_export)


def add_parity_parser(sub) -> None:
    """`mkn parity`."""
    q = sub.add_parser("parity", help="run every exported file against the PyTorch reference on the test set")
    q.add_argument("dir", type=Path, help="export directory")
    q.add_argument("--testset", type=Path, default=Path("testsets"), help="folder made by make-testset")
    q.add_argument("--formats", action=ListOption, choices=EXPORT_FORMATS,
                   help="only these formats (default: all in the manifest)")
    q.add_argument("--images", type=positive_int, help="use only the first N test images")
    q.add_argument("--tol", action="append", metavar="FORMAT.FIELD=VALUE",
                   help="override a tolerance, e.g. tflite-fp16.max_abs=3e-3 (repeatable)")
    q.add_argument("--json", type=Path, help="report path (default DIR/parity.json)")
    q.add_argument("--no-gpu", action="store_true",
                   help="skip the rows of TFLite files on LiteRT's GPU accelerator (FORMAT@gpu-fp16/-fp32)")
    q.set_defaults(func=cmd_parity)


def add_bench_parser(sub) -> None:
    """`mkn bench`."""
    k = sub.add_parser("bench", help="latency, size, memory and kernel L1 of every exported format (+ gate)")
    k.add_argument("dir", type=Path, help="export directory")
    k.add_argument("--runs", type=positive_int, default=50)
    k.add_argument("--warmup", type=int, default=5)
    k.add_argument("--threads", action=ListOption, item_type=positive_int, default=[1, 2], help="e.g. 1,2")
    k.add_argument("--sizes", action=ListOption, item_type=positive_int,
                   help="input sides, e.g. 128,256,512 (others than the export's are exported beside it)")
    k.add_argument("--testset", type=Path, default=Path("testsets"), help="for kernel L1")
    k.add_argument("--images", type=positive_int, help="kernel L1 on the first N test images only")
    k.add_argument("--json", type=Path, required=True, help="records (Markdown and PNG written beside it)")
    k.add_argument("--baseline", type=Path, help="earlier --json output: fail on a regression against it")
    k.add_argument("--max-slowdown", type=float, default=1.10, help="allowed median latency ratio")
    k.add_argument("--max-l1-increase", type=float, default=0.01, help="allowed kernel L1 increase")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    k.set_defaults(func=cmd_bench)


def add_android_parser(sub) -> None:
    """`mkn android devices | bench | parity`."""
    asub = command_group(sub, "android", "devices and on-device benchmarks over adb")
    ad = asub.add_parser("devices", help="list attached devices and their state")
    ad.add_argument("--adb", help="adb executable (default: $ADB, then PATH)")
    ad.set_defaults(func=cmd_android_devices)
    add_android_bench_parser(asub)
    add_android_parity_parser(asub)


def add_android_bench_parser(asub) -> None:
    """`mkn android bench`."""
    ab = asub.add_parser("bench", help="run each .tflite with benchmark_model on a phone")
    ab.add_argument("dir", type=Path, help="export directory")
    ab.add_argument("--benchmark-binary", type=Path, required=True,
                    help="TensorFlow Lite's Android benchmark_model for the phone's ABI")
    ab.add_argument("--serial", action="append", help="device serial; repeat it for several phones run in parallel "
                                                   "(default: the only device attached)")
    ab.add_argument("--all-devices", action="store_true", help="every attached device that is ready, in parallel")
    ab.add_argument("--adb", help="adb executable (default: $ADB, then PATH)")
    ab.add_argument("--delegates", action=ListOption, default=["cpu", "xnnpack"],
                    help="cpu,xnnpack,gpu,nnapi")
    ab.add_argument("--threads", action=ListOption, item_type=positive_int, default=[1, 4])
    ab.add_argument("--cores", default="all", help="all, big, or core numbers (4,5,6,7); pinned with taskset")
    ab.add_argument("--runs", type=positive_int, default=50)
    ab.add_argument("--warmup", type=int, default=5)
    ab.add_argument("--repeats", type=positive_int, default=3,
                    help="benchmark_model invocations per job: the median and its bootstrap 95%% interval over them")
    ab.add_argument("--cooldown", type=float, default=0.0, metavar="SECONDS", help="pause before each invocation")
    ab.add_argument("--sustained", type=duration, metavar="60s",
                    help="instead of --repeats, invoke each job for this long and report latency over time")
    ab.add_argument("--timeout", type=positive_float, default=600, help="seconds before a run counts as hung")
    ab.add_argument("--keep", action="store_true", help="leave the working folder on the device")
    ab.add_argument("--json", type=Path, required=True)
    ab.add_argument("--baseline", type=Path, help="earlier --json output of the same device: regression gate")
    ab.add_argument("--max-slowdown", type=float, default=1.10)
    ab.set_defaults(func=cmd_android_bench)


def add_android_parity_parser(asub) -> None:
    """`mkn android parity`."""
    ap = asub.add_parser("parity", help="run each .tflite on the phone on test images vs the PyTorch reference")
    ap.add_argument("dir", type=Path, help="export directory")
    ap.add_argument("--runner-binary", type=Path, required=True,
                    help="device program: RUNNER --graph= --input= --output_dir= --num_threads= [delegate flag]")
    ap.add_argument("--serial")
    ap.add_argument("--adb")
    ap.add_argument("--testset", type=Path, default=Path("testsets"))
    ap.add_argument("--delegates", action=ListOption, default=["xnnpack"],
                    help="cpu,xnnpack,gpu,nnapi")
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--images", type=positive_int, help="first N test images only")
    ap.add_argument("--tol", action="append", metavar="FORMAT.FIELD=VALUE")
    ap.add_argument("--timeout", type=positive_float, default=600)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path, required=True)
    ap.set_defaults(func=cmd_android_parity)


def add_sr_parser(sub) -> None:
    """`mkn sr`."""
    s = sub.add_parser("sr", help="super-resolve an image with an estimated or given kernel")
    s.add_argument("image", type=Path)
    s.add_argument("--sf", type=int, choices=(2, 3, 4), required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--model", default="kernelnet", help="estimator (name or name:config)")
    g.add_argument("--kernel", type=Path, help="use this kernel (.npy) instead of estimating one")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--noise-aware", action="store_true",
                   help="SR regularisation follows the image's estimated noise (camera photos; sr.NOISE_AWARE)")
    s.add_argument("--out", required=True,
                   help="SR image file (.png/.tif: 16-bit if the input is; .jpg: 8-bit) or a folder (existing, or "
                        "ending in /) for <stem>_sr.png; the kernel is written beside it as <out stem>_kernel.npy")
    s.set_defaults(func=cmd_sr)


def add_make_testset_parser(sub) -> None:
    """`mkn make-testset`."""
    t = sub.add_parser("make-testset", help="build the scikit-image test set (OUT/sf{N}/)")
    t.add_argument("--sf", action=ListOption, item_type=int, choices=(2, 3, 4), default=[2, 3, 4])
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="rebuild an existing set")
    t.add_argument("--camera", action="store_true",
                   help="also write the camera split OUT/sf{N}-camera/ (sensor noise + JPEG at three levels)")
    t.set_defaults(func=cmd_make_testset)


def add_eval_parser(sub) -> None:
    """`mkn eval`."""
    v = sub.add_parser("eval", help="score estimators on the test set (JSON + table)")
    v.add_argument("--testset", type=Path, required=True, help="folder made by make-testset")
    v.add_argument("--sf", action=ListOption, item_type=int, choices=(2, 3, 4), default=[2, 3, 4])
    v.add_argument("--split", choices=("clean", "camera"), default="clean",
                   help="test split: clean (sf{N}/) or camera (sf{N}-camera/, reported per level)")
    v.add_argument("--models", action=ListOption, default=["fixed-gaussian"], help="name or name:config")
    v.add_argument("--json", type=Path, help="write the report here")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.add_argument("--sr", action="store_true",
                   help="score super-resolution with each kernel instead (PSNR/SSIM vs the HR originals)")
    v.add_argument("--noise-aware", action="store_true",
                   help="with --sr: the noise-aware SR schedule (sr.NOISE_AWARE) instead of the noise-blind one")
    v.add_argument("--check-backends", action="store_true",
                   help="also run spectral models with the matmul backend and report max |dk| vs torch")
    v.add_argument("--error-budget", action="store_true",
                   help="KernelNet's kernel L1 stage by stage instead: FFT-2 floor, oracle gradients, "
                        "coarse, refined (--config picks the weights)")
    v.add_argument("--config", default="mobile", help="KernelNet config for --error-budget")
    v.set_defaults(func=cmd_eval)


def add_latency_parser(sub) -> None:
    """`mkn latency`."""
    b = sub.add_parser("latency", help="median PyTorch eager latency per config and input size")
    b.add_argument("--models", action=ListOption, default=["kernelnet", "s2k"])
    b.add_argument("--configs", action=ListOption, default=["mobile", "paper"])
    b.add_argument("--sf", type=int, choices=(2, 3, 4), default=2)
    b.add_argument("--sizes", action=ListOption, item_type=positive_int, default=[128, 256, 512],
                   help="LR input sides")
    b.add_argument("--threads", action=ListOption, item_type=positive_int, default=[2])
    b.add_argument("--runs", type=positive_int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--json", type=Path)
    b.set_defaults(func=cmd_latency)


def add_tune_sr_parser(sub) -> None:
    """`mkn tune-sr`."""
    u = sub.add_parser("tune-sr", help="grid-search the SR solver's regularisation on training images")
    u.add_argument("--sf", action=ListOption, item_type=int, choices=(2, 3, 4), default=[2, 4])
    u.add_argument("--models", action=ListOption, default=["kernelnet", "s2k"], help="estimators whose kernels count")
    u.add_argument("--json", type=Path, help="write the report here")
    u.add_argument("--quiet", action="store_true", help="no progress bars")
    u.add_argument("--camera", action="store_true",
                   help="tune the noise-aware schedule (noise_floor x noise_end) on the clean and camera splits")
    u.set_defaults(func=cmd_tune_sr)


def add_placement_parser(sub) -> None:
    """`mkn placement`."""
    pl = sub.add_parser("placement", help="GPU ops and NPU partitions of exports' TFLite files (Markdown)")
    pl.add_argument("dirs", nargs="+", type=Path, help="export directories")
    pl.set_defaults(func=cmd_placement)


def add_ship_check_parser(sub) -> None:
    """`mkn ship-check`."""
    c = sub.add_parser("ship-check", help="may a finished camera run replace the shipped weights? (ship_check.py)")
    c.add_argument("run", type=Path, help="run folder written by `mkn train`")
    c.add_argument("--within", type=float, default=None, metavar="L1",
                   help="for a run that makes the model cheaper: pass when no worse than the shipped weights "
                        "by more than L1 on every set (e.g. 0.02); default: the camera rule (better on camera sets)")
    c.set_defaults(func=cmd_ship_check)


def add_train_parser(sub) -> None:
    """`mkn train`."""
    r = sub.add_parser("train", help="train an estimator (seeded, resumable, logged)")
    r.add_argument("model", choices=("kernelnet", "s2k"))
    r.add_argument("--sf", type=int, choices=(2, 3, 4), required=True)
    r.add_argument("--config", default="mobile")
    r.add_argument("--out", type=Path, help="run folder (default runs/<model>_<config>_sf<N>)")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r.add_argument("--ship", action="store_true", help="copy the best weights, log and command into the package")
    for name in ("seed", "pretrain-steps", "steps", "refine-steps", "refine-cache", "refine-batch", "batch",
                 "patch-lr", "threads"):  # + the options below = CLI_OPTIONS
        r.add_argument(f"--{name}", type=int, default=None)
    r.add_argument("--adv-weight", type=float, default=None,
                   help="S2K: weight of the adversarial shape loss (default 1; 0 = no discriminator)")
    r.add_argument("--texture-prob", type=float, default=None,
                   help="share of HR patches from procedural textures, taken from dead leaves (default 0, at most 0.5)")
    r.add_argument("--live-head-weight", type=float, default=None,
                   help="S2K: weight of the hinge keeping the kernel map out of softplus' dead zone (default 0)")
    r.add_argument("--level-input", action="store_true", default=None,
                   help="S2K: feed the U-Net the log spectrum's mean and std (the noise floor that "
                        "standardising removes) as two more input planes")
    r.add_argument("--fft1-threshold", type=float, default=None,
                   help="KernelNet: FFT-1 taps below this x peak are zeroed (default: the config's, 0.05)")
    r.add_argument("--fft1-threshold-mode", choices=("hard", "soft"), default=None,
                   help="KernelNet: 'hard' zeroes the taps below the threshold, 'soft' subtracts it and clips at 0 "
                        "(continuous: no tap flips under fp16/int8 rounding); default: the config's, hard")
    r.add_argument("--fft1-solver", choices=("eq11", "normal-equations"), default=None,
                   help="KernelNet: 'eq11' divides the spectra per frequency (the paper); 'normal-equations' "
                        "solves the support-restricted least squares by matrix products (no division an integer "
                        "NPU cannot hold); default: the config's, eq11")
    r.add_argument("--fft1-lambda-init", type=positive_float, default=None,
                   help="KernelNet: starting value of the FFT-1 solver's learned lambda (default: the config's, "
                        "1e-4 per pixel for eq11, 0.02 on the normal equations' scaled system)")
    r.add_argument("--refine-arch", choices=("paper", "wide", "wide-residual"), default=None,
                   help="KernelNet: refinement architecture (default: the config's; see models/kernelnet.py)")
    r.add_argument("--grad-arch", choices=("dense", "separable", "half-res", "factored", "half-res-factored",
                                           "half-res-detail"),
                   default=None,
                   help="KernelNet: gradient-estimator convolutions (default: the config's; see models/kernelnet.py)")
    r.add_argument("--grad-channels", type=int, default=None,
                   help="KernelNet: gradient-estimator width (default: the config's, 24 for mobile)")
    r.add_argument("--camera", action="store_true", default=None,
                   help="train and validate on the camera degradation (sensor noise + JPEG, see camera.py)")
    r.add_argument("--camera-clean-prob", type=float, default=None,
                   help="camera run: share of training pairs kept lab-degraded (default 0.25; validation keeps 0.25)")
    r.add_argument("--finetune", action="store_true", default=None,
                   help="start from the shipped weights this run would replace (fresh optimiser)")
    r.add_argument("--start-from", metavar="RUN", default=None,
                   help="a fine-tune that starts from this run folder's best weights instead of the shipped ones")
    r.add_argument("--distill", action="store_true", default=None,
                   help="KernelNet fine-tune: pretrain the (new) gradient CNN to reproduce the start weights' "
                        "gradient CNN instead of the HR gradients")
    r.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (default 1e-3, cosine-decayed)")
    r.add_argument("--pool", help="train on this kernel pool (`mkn pool build`; a fifth held out validates) "
                                  "instead of the procedural families")
    r.add_argument("--family-weights", default=None,
                   help="training kernels' family weights, e.g. gaussian=2,motion=1,disk=1 (default equal; "
                        "validation stays equal)")
    r.add_argument("--val-size", type=positive_int, default=None, help="validation pairs (default 96)")
    r.add_argument("--bank-size", type=positive_int, default=None,
                   help="natural images held in memory for HR patches (default 48)")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="cuda: train on this process's GPU (under torchrun: LOCAL_RANK's)")
    r.set_defaults(func=cmd_train)


PARSERS = (add_estimate_parser, add_estimate_collection_parser, add_pool_parser, add_export_parser,
           add_parity_parser, add_bench_parser, add_android_parser, add_sr_parser, add_make_testset_parser,
           add_eval_parser, add_latency_parser, add_tune_sr_parser, add_placement_parser,
           add_ship_check_parser, add_train_parser)
"""One function per command, each adding its subparser (and sub-subparsers)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mkn", description="Blind-SR kernel estimators, from paper to phone.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return p



def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and turn errors into one line and an exit code (:data:`EXIT_OK`)."""
    from .imio import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mkn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_FAILED
    except (ValueError, OSError) as exc:
        print(f"mkn {args.command}: error: {exc or exc.__class__.__name__}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
