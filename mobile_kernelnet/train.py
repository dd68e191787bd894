"""Training loops, checkpoints and logs (`mkn train`).

KernelNet is trained in two stages, as in the paper:

1. ``pretrain`` (§4.1): the gradient estimator alone, L1 between its output and the
   gradients of the phase-0-decimated HR patch (the sampling grid of the degradation,
   see :mod:`degrade`; a bicubic-downscaled target would sit half an LR pixel off).
2. ``e2e`` (§4.2): the whole network, loss = kernel L1 (``sum |k - k_gt|``, the
   paper's metric) + 0.5 x the same on the FFT-2 output (deep supervision, which keeps
   the fixed stages' input meaningful while the refinement learns).

Kernels come from a pool drawn from all three families (Gaussian, motion, disk;
equal weights; at sf 3 and 4 a fifth of it is the paper's §3.4 extension, sf 2
kernels self-convolved); HR patches from :class:`data.HRPatchSampler`; LR images are made on
the fly with :func:`degrade.degrade_torch`, white noise U(0, ``noise_max``) and 8-bit
quantisation. Validation uses a fixed set drawn from the same training sources with
seed ``seed + 1`` (never the test set).

Everything is seeded. A checkpoint (model, optimiser, step, RNG states) is written
atomically every ``ckpt_every`` steps; ``--resume`` continues from it. The log is
JSON lines in ``OUT/log.jsonl``. ``--ship`` copies the best-validation weights, the
log and a record of the exact command next to the package's shipped weights.
"""
from __future__ import annotations

import json
import math
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import HRPatchSampler, training_batch
from .degrade import decimate, degrade_torch, quantize_8bit
from .imio import atomic_output
from .kernels import FAMILIES, KernelPool
from .models.kernelnet import CONFIGS, KernelNet, image_gradients
from .models.registry import weights_path


@dataclass
class TrainConfig:
    """Schedule and data settings of one training run."""

    sf: int = 2
    config: str = "mobile"
    seed: int = 0
    patch_lr: int = 96          # LR patch side; HR patch = sf x this
    batch: int = 16
    pretrain_steps: int = 1500
    steps: int = 4000           # end-to-end steps
    lr: float = 1e-3            # Adam, cosine-decayed to 1 % within each stage
    noise_max: float = 0.005    # LR noise sigma ~ U(0, noise_max)
    pool_size: int = 3000
    extension_fraction: float = 0.2  # sf 3/4: share of the pool made from sf 2 kernels (§3.4)
    val_size: int = 96
    val_every: int = 250
    ckpt_every: int = 100
    log_every: int = 25
    bank_size: int = 48
    threads: int = 2
    stages: tuple = field(default=("pretrain", "e2e"))


def _kernel_l1(k: torch.Tensor, k_gt: torch.Tensor) -> torch.Tensor:
    """``(B, 1, K, K)`` vs ``(B, K, K)`` -> ``(B,)`` sums of absolute differences."""
    return (k[:, 0] - k_gt).abs().sum(dim=(-2, -1))


def _grad_target(hr: torch.Tensor, sf: int) -> torch.Tensor:
    return image_gradients(decimate(hr, sf))


class Trainer:
    """One KernelNet run in ``out``: build, (resume,) train both stages, validate, log."""

    def __init__(self, cfg: TrainConfig, out: Path, resume: bool = False):
        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = KernelNet(cfg.sf, CONFIGS[cfg.config])
        self.pool = self._training_pool()
        self.sampler = HRPatchSampler(cfg.sf * cfg.patch_lr, self.rng, bank_size=cfg.bank_size)
        self.val = self._validation_set()
        self.stage, self.step = cfg.stages[0], 0
        self.best_val = math.inf
        self.opt = self._optimizer()
        ckpt = self.out / "checkpoint.pt"
        if resume and ckpt.exists():
            self._load(ckpt)
        elif not resume and (self.out / "log.jsonl").exists():
            raise FileExistsError(f"{self.out} already holds a run; pass --resume to continue it")

    # -- data -------------------------------------------------------------------
    def _training_pool(self) -> KernelPool:
        """All three families, equal weights; at sf 3/4 ``extension_fraction`` of the pool is
        KernelNet's §3.4 extension (self-convolved sf 2 kernels)."""
        cfg = self.cfg
        n_ext = int(cfg.pool_size * cfg.extension_fraction) if cfg.sf != 2 else 0
        pool = KernelPool.generate(cfg.sf, cfg.pool_size - n_ext, self.rng)
        if not n_ext:
            return pool
        return KernelPool.concat([pool, KernelPool.extended_from_sf2(KernelPool.generate(2, n_ext, self.rng), cfg.sf)])

    def _validation_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        rng = np.random.default_rng(self.cfg.seed + 1)
        pool = KernelPool.generate(self.cfg.sf, self.cfg.val_size, rng)
        hr = HRPatchSampler(self.cfg.sf * self.cfg.patch_lr, rng, bank_size=8).batch(self.cfg.val_size)
        k = torch.from_numpy(pool.kernels)
        lr = quantize_8bit(degrade_torch(hr, k, self.cfg.sf))
        return lr, hr, k, pool.families

    # -- optimisation -----------------------------------------------------------
    def _params(self):
        if self.stage == "pretrain":
            return self.model.gradient.parameters()
        return self.model.parameters()

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._params(), lr=self.cfg.lr)

    def _stage_steps(self) -> int:
        return self.cfg.pretrain_steps if self.stage == "pretrain" else self.cfg.steps

    def _set_lr(self) -> None:
        frac = self.step / max(self._stage_steps(), 1)
        lr = self.cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in self.opt.param_groups:
            g["lr"] = lr

    def _loss(self, lr_img, hr, k_gt) -> tuple[torch.Tensor, dict]:
        if self.stage == "pretrain":
            pred = self.model.gradient(image_gradients(lr_img))
            loss = (pred - _grad_target(hr, self.cfg.sf)).abs().mean()
            return loss, {"grad_l1": loss.item()}
        out = self.model.stages(lr_img)
        l1 = _kernel_l1(out["kernel"], k_gt).mean()
        coarse = _kernel_l1(out["k_coarse"], k_gt).mean()
        return l1 + 0.5 * coarse, {"kernel_l1": l1.item(), "coarse_l1": coarse.item()}

    # -- validation, logging, checkpoints ---------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Mean kernel L1 (and per family) on the fixed validation set; gradient L1 in pretrain."""
        self.model.eval()
        lr, hr, k, fams = self.val
        rows = []
        for i in range(0, len(lr), 32):
            out = self.model.stages(lr[i:i + 32])
            rows.append((_kernel_l1(out["kernel"], k[i:i + 32]), _kernel_l1(out["k_coarse"], k[i:i + 32]),
                         (out["grads"] - _grad_target(hr[i:i + 32], self.cfg.sf)).abs().mean(dim=(1, 2, 3))))
        self.model.train()
        l1, coarse, grad = (torch.cat(c).numpy() for c in zip(*rows))
        res = {"val_l1": float(l1.mean()), "val_coarse_l1": float(coarse.mean()),
               "val_grad_l1": float(grad.mean())}
        res.update({f"val_l1_{f}": float(l1[fams == f].mean()) for f in FAMILIES})
        return res

    def _log(self, record: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save(self) -> None:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "stage": self.stage,
                 "step": self.step, "best_val": self.best_val, "np_rng": self.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "train_config": asdict(self.cfg)}
        with atomic_output(self.out / "checkpoint.pt") as tmp:
            torch.save(state, tmp)

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.stage, self.step, self.best_val = state["stage"], state["step"], state["best_val"]
        self.opt = self._optimizer()
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])

    def _save_best(self, val: dict) -> None:
        if self.stage == "e2e" and val["val_l1"] < self.best_val:
            self.best_val = val["val_l1"]
            with atomic_output(self.out / "best.pt") as tmp:
                torch.save({"model": self.model.state_dict(), "val": val, "step": self.step}, tmp)

    # -- the loop ---------------------------------------------------------------
    def run(self) -> dict:
        """Train the remaining steps of every stage; returns the last validation record."""
        self.model.train()
        stages = list(self.cfg.stages)
        val = {}
        for stage in stages[stages.index(self.stage):]:
            if stage != self.stage:
                self.stage, self.step = stage, 0
                self.opt = self._optimizer()
            t0 = time.time()
            bar = tqdm(total=self._stage_steps(), initial=self.step, desc=f"sf{self.cfg.sf} {stage}",
                       dynamic_ncols=True, mininterval=5)
            while self.step < self._stage_steps():
                self._set_lr()
                lr_img, hr, k = training_batch(self.sampler, self.pool, self.cfg.batch, self.cfg.noise_max)
                loss, parts = self._loss(lr_img, hr, k)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.opt.step()
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.log_every == 0:
                    self._log({"stage": stage, "step": self.step, "loss": loss.item(), **parts,
                               "lr": self.opt.param_groups[0]["lr"], "sec": round(time.time() - t0, 1)})
                    bar.set_postfix(parts)
                if self.step % self.cfg.val_every == 0 or self.step == self._stage_steps():
                    val = self.validate()
                    self._log({"stage": stage, "step": self.step, **val})
                    self._save_best(val)
                if self.step % self.cfg.ckpt_every == 0 or self.step == self._stage_steps():
                    self._save()
            bar.close()
        if not val:  # resumed after the end: nothing left to train
            val = self.validate()
        else:
            self._log({"stage": "done", "best_val_l1": self.best_val})
        return val

    def ship(self, command: str) -> Path:
        """Copy ``best.pt`` (state dict only), the log and a record of the run to the
        package's weights folder; returns the weights path."""
        dest = weights_path("kernelnet", self.cfg.config, self.cfg.sf)
        dest.parent.mkdir(parents=True, exist_ok=True)
        best = torch.load(self.out / "best.pt", map_location="cpu", weights_only=True)
        with atomic_output(dest) as tmp:
            torch.save({"model": best["model"]}, tmp)
        shutil.copyfile(self.out / "log.jsonl", dest.with_suffix(".log"))
        record = {"command": command, "seed": self.cfg.seed, "train_config": asdict(self.cfg),
                  "best_step": best["step"], "best_validation": best["val"],
                  "torch": torch.__version__, "python": platform.python_version(),
                  "machine": platform.machine(), "threads": self.cfg.threads,
                  "git_commit": _git_commit()}
        with atomic_output(dest.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
        return dest


CLI_OPTIONS = ("seed", "pretrain_steps", "steps", "batch", "patch_lr", "threads")


def canonical_command(cfg: TrainConfig) -> str:
    """The one command that reproduces ``cfg`` from scratch (options left at their
    defaults are omitted)."""
    default = TrainConfig()
    extra = "".join(f" --{k.replace('_', '-')} {getattr(cfg, k)}" for k in CLI_OPTIONS
                    if getattr(cfg, k) != getattr(default, k))
    return f"mkn train kernelnet --sf {cfg.sf} --config {cfg.config}{extra} --ship"


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train_kernelnet(cfg: TrainConfig, out: Path, resume: bool, ship: bool) -> dict:
    """Run (or resume) a KernelNet training and optionally ship its weights."""
    trainer = Trainer(cfg, out, resume)
    val = trainer.run()
    if ship:
        dest = trainer.ship(canonical_command(cfg))
        print(f"shipped {dest}")
    return val
