"""`mkn ship-check RUN`: may a finished camera run replace the shipped weights?

The rule has two validation sets, both from the *training* sources (never the test
gallery), and four criteria, each against the shipped weights of the run's model,
config and sf scored on the very same set:

1. patch camera mix (the run's own ``val_l1``): lower than the shipped weights';
2. patch clean set (``val_clean_l1``): at most :data:`CLEAN_ALLOWANCE` higher;
3. natural images at deployment size (:func:`natural_errors`: the ``tune-sr`` cases of
   :data:`NATURAL_SEEDS` seeds plus :data:`NATURAL_TEXTURES` procedural textures per seed
   -- 180 at sf 2 -- whole LR images through the fixed-budget window), clean: the upper
   end of the paired bootstrap 95 % interval of the mean difference at most
   :data:`CLEAN_ALLOWANCE`;
4. the same images at the three camera levels, mean L1: lower.

A run that makes the model *cheaper* (a new front end, issue 21) is judged with
``within=ALLOWANCE`` instead: it must not be better, only no worse than the shipped weights
by more than the allowance on all four (criteria 3 and 4 by the upper end of their interval),
and criteria 3 and 4 must also hold on each source of the natural set alone
(:data:`SOURCES`: the packaged photos and the procedural textures, 90 cases each at sf 2).

The patch sets alone once passed a run whose clean test error then rose by 0.09, and a
15-case natural set passed two runs at +0.03 that the gallery then put at +0.04
(NOTES.md, ninth and tenth sessions); criteria 3 and 4, with six times the cases and the
spread taken into account, are there for that. Two cheaper front ends then passed the
natural set and failed the gallery by 0.03-0.05 on motion and disks: the photo half agreed
with the gallery, the textures (2-4x larger errors) dominated the mean -- hence the
per-source criteria of the cheaper rule.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .budget import apply_window, budget_for, select_window
from .camera import LEVELS
from .metrics import kernel_l1, paired_mean_difference_ci

CLEAN_ALLOWANCE = 0.03
"""Issue 19's allowance on clean images for a camera-trained model."""
SPLITS = ("clean", *LEVELS)
NATURAL_SEEDS = 6
"""Seeds of :func:`sr_tuning.tuning_cases` in the natural set (kernels and noise differ per seed)."""
NATURAL_TEXTURES = 5
"""Procedural textures per seed beside the five packaged photos: without them two camera
runs and a denoising front stage passed the natural set and failed the gallery (NOTES.md)."""
SOURCES = ("photos", "textures")
"""The natural set's two sources (:func:`case_sources`)."""


@torch.no_grad()
def natural_errors(models: dict[str, nn.Module], sf: int, budget: int) -> tuple[dict[str, dict[str, np.ndarray]],
                                                                                np.ndarray, np.ndarray]:
    """Per-case kernel L1 ``(N,)`` of each of ``models``, each seeing the LR window of side
    ``budget`` (:mod:`budget`), on :func:`sr_tuning.tuning_cases` at ``sf`` for seeds
    ``0 .. NATURAL_SEEDS - 1`` with :data:`NATURAL_TEXTURES` textures, per split (``clean``
    and each camera level): ``({name: {split: errors}}, families (N,), cases (N,))``, the
    cases' kernel families and names (``<image>_<family>``, the procedural images named
    ``texture<i>``; the same order in every split). The images are made once per seed and
    every model sees the same cases."""
    from .sr_tuning import tuning_cases, tuning_images

    for model in models.values():
        model.eval()
    errors = {name: {split: [] for split in SPLITS} for name in models}
    families, names = [], []
    for seed in range(NATURAL_SEEDS):
        images = tuning_images(sf, seed, NATURAL_TEXTURES)
        for split in SPLITS:
            for case in tuning_cases(sf, seed, level=None if split == "clean" else split, images=images):
                if split == "clean":
                    families.append(case["family"])
                    names.append(case["name"])
                lr = torch.from_numpy(apply_window(case["lr"], select_window(case["lr"], budget)))
                for name, model in models.items():
                    errors[name][split].append(kernel_l1(model(lr[None, None])[0, 0].numpy(), case["kernel"]))
    return ({name: {split: np.asarray(e) for split, e in per.items()} for name, per in errors.items()},
            np.asarray(families), np.asarray(names))


def case_sources(cases: np.ndarray) -> np.ndarray:
    """``(N,)`` case names of :func:`natural_errors` -> ``(N,)`` their :data:`SOURCES` entry:
    ``"textures"`` for the procedural images (``texture<i>_...``), ``"photos"`` otherwise."""
    return np.where(np.char.startswith(cases.astype(str), "texture"), SOURCES[1], SOURCES[0])


def family_means(errors: dict[str, np.ndarray], families: np.ndarray) -> dict[str, dict[str, float]]:
    """``{split: {family: mean L1}}`` of one model's :func:`natural_errors`."""
    return {split: {f: float(e[families == f].mean()) for f in np.unique(families)} for split, e in errors.items()}


def natural_scores(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of :func:`natural_errors` per split, and ``camera`` (the levels' mean)."""
    scores = {split: float(e.mean()) for split, e in errors.items()}
    scores["camera"] = float(np.mean([scores[level] for level in LEVELS]))
    return scores


def _passes(difference: float, allowance: float | None) -> bool:
    """``difference`` (run - shipped, or the upper end of its interval) within ``allowance``;
    ``None``: the run must be strictly better."""
    return difference < 0 if allowance is None else difference <= allowance


def run_model(run: Path) -> tuple[nn.Module, dict, dict]:
    """The best checkpoint of ``run`` as a model, its training config and best validation."""
    from .train import RECIPES, TrainConfig

    log = (run / "log.jsonl").read_text().splitlines()
    cfg = TrainConfig(**json.loads(log[0])["train_config"])
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    model = RECIPES[cfg.model](cfg).model
    model.load_state_dict(best["model"])
    baseline = next((json.loads(line)["validation"] for line in log if '"shipped-baseline"' in line), None)
    return model.eval(), {"cfg": cfg, "best_val": best["val"]}, baseline


def ship_check(run: str | Path, within: float | None = None) -> dict:
    """The four criteria of the module docstring for the run folder ``run``: the camera rule,
    or with ``within`` (issue 21 asks 0.02) "no worse than shipped + within" on
    every one. Written to ``run/ship_check.json`` by the CLI."""
    from .models import create_model

    run = Path(run)
    model, info, baseline = run_model(run)
    cfg = info["cfg"]
    if baseline is None or "val_clean_l1" not in baseline or "val_clean_l1" not in info["best_val"]:
        raise ValueError(f"{run} is not a camera run with a shipped-baseline record; the rule is for those")
    shipped = create_model(cfg.shipped_name, cfg.sf, cfg.config)
    errors, families, cases = natural_errors({"run": model, "shipped": shipped, "fixed-gaussian": create_model(
        "fixed-gaussian", cfg.sf)}, cfg.sf, budget_for(cfg.sf, None, cfg.shipped_name))
    run_err, ship_err = errors["run"], errors["shipped"]
    run_nat, ship_nat = natural_scores(run_err), natural_scores(ship_err)
    per_case = {"clean": (run_err["clean"], ship_err["clean"]),  # (run, shipped) per-case L1, (N,) each
                "camera": tuple(np.mean([e[v] for v in LEVELS], axis=0) for e in (run_err, ship_err))}
    clean_ci, camera_ci = (paired_mean_difference_ci(*per_case[split]) for split in ("clean", "camera"))
    val = info["best_val"]
    clean_bar, camera_bar = (CLEAN_ALLOWANCE, None) if within is None else (within, within)
    criteria = {
        "patch_camera": {"run": val["val_l1"], "shipped": baseline["val_l1"],
                         "pass": _passes(val["val_l1"] - baseline["val_l1"], camera_bar)},
        "patch_clean": {"run": val["val_clean_l1"], "shipped": baseline["val_clean_l1"],
                        "pass": _passes(val["val_clean_l1"] - baseline["val_clean_l1"], clean_bar)},
        "natural_clean": {"run": run_nat["clean"], "shipped": ship_nat["clean"], "difference_95ci": clean_ci,
                          "pass": _passes(clean_ci[1], clean_bar)},
        "natural_camera": {"run": run_nat["camera"], "shipped": ship_nat["camera"], "difference_95ci": camera_ci,
                           "pass": _passes(run_nat["camera"] - ship_nat["camera"] if within is None
                                           else camera_ci[1], camera_bar)},
    }
    if within is not None:
        sources = case_sources(cases)
        for source in SOURCES:
            mask = sources == source
            for split, (run_e, ship_e) in per_case.items():
                ci = paired_mean_difference_ci(run_e[mask], ship_e[mask])
                criteria[f"natural_{split}_{source}"] = {
                    "run": float(run_e[mask].mean()), "shipped": float(ship_e[mask].mean()),
                    "difference_95ci": ci, "pass": _passes(ci[1], within)}
    return {"run": str(run), "model": cfg.shipped_name, "sf": cfg.sf, "config": cfg.config,
            "rule": "camera" if within is None else f"cheaper, within +{within}", "criteria": criteria,
            "natural": {"run": run_nat, "shipped": ship_nat, "cases": len(run_err["clean"])},
            "natural_by_family": {name: family_means(e, families) for name, e in errors.items()},
            "ship": all(c["pass"] for c in criteria.values())}
