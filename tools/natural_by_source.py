"""Ship-check's natural set split by source: packaged photos vs procedural textures, per
kernel family, clean and the high camera level, for the shipped weights and the given runs.

Usage: ``python tools/natural_by_source.py RUN [RUN ...] [--sf 2] [--json PATH]``.
Prints ``{model: {"<split>/<source>": {family: mean kernel L1}}}`` and writes it to JSON.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mobile_kernelnet.budget import budget_for
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.models import create_model
from mobile_kernelnet.ship_check import SOURCES, case_sources, natural_errors, run_model

SPLITS = ("clean", "high")


def by_source(errors: dict[str, np.ndarray], families: np.ndarray, sources: np.ndarray) -> dict[str, dict[str, float]]:
    """One model's :func:`ship_check.natural_errors` as ``{"<split>/<source>": {family: mean}}``;
    ``sources`` (N,) is each case's :func:`ship_check.case_sources` entry."""
    return {f"{split}/{source}": {str(f): float(errors[split][(sources == source) & (families == f)].mean())
                                  for f in np.unique(families)}
            for split in SPLITS for source in SOURCES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--sf", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("results/natural_by_source.json"))
    args = parser.parse_args()
    models = {"shipped": create_model("kernelnet", args.sf, "mobile")}
    models.update({run.name: run_model(run)[0] for run in args.runs})
    errors, families, cases = natural_errors(models, args.sf, budget_for(args.sf, None, "kernelnet"))
    result = {name: by_source(per, families, case_sources(cases)) for name, per in errors.items()}
    for name, rows in result.items():
        print(name)
        for key, means in rows.items():
            print(f"  {key:14s} " + "  ".join(f"{f} {v:.3f}" for f, v in means.items()))
    write_json(result, args.json)


if __name__ == "__main__":
    main()
