"""Training loops, checkpoints and logs (`mkn train`).

One :class:`Trainer` runs every model; a *recipe* per model says what it builds,
which stages it trains and what one step does (:data:`RECIPES`).

**KernelNet** (:class:`KernelNetRecipe`), two stages as in the paper and an optional third:

1. ``pretrain`` (§4.1): the gradient estimator alone, L1 between its output and the
   gradients of the phase-0-decimated HR patch (the sampling grid of the degradation,
   see :mod:`degrade`; a bicubic-downscaled target would sit half an LR pixel off).
   With ``--distill`` (a fine-tune) the target is instead the start weights' gradient CNN
   on the same LR image: a new front end learns to feed FFT-1 and the refinement what
   they were trained on.
2. ``e2e`` (§4.2): the whole network, loss = kernel L1 (``sum |k - k_gt|``, the
   paper's metric) + 0.5 x the same on the FFT-2 output (deep supervision, which keeps
   the fixed stages' input meaningful while the refinement learns).
3. ``refine`` (``--refine-steps N``, off by default): the front end (gradient CNN, FFT-1's
   λ) is frozen, the FFT-2 outputs of ``refine_cache`` fresh training pairs are computed
   once and kept in ``OUT/refine_cache.pt``, and the refinement alone is fitted on them
   (kernel L1, batches of ``refine_batch``). The refinement is a tiny net on a ``K x K``
   map, so this gives it many more updates per CPU-second than end-to-end steps, each
   of which runs the gradient CNN forward and backward.

**S2K** (:class:`S2KRecipe`), one ``gan`` stage: generator loss
``λ1 mean|k - k_gt| + λ2 (D(s; k) - 1)² + λ3 TV(k)`` with the paper's (100, 1, 1),
discriminator LSGAN loss ``((D(s; k_gt) - 1)² + D(s; k)²) / 2``, Adam (β 0.5, 0.999).
``--adv-weight 0`` trains without the discriminator (the ablation; shipped as
``s2k-noadv``). ``--live-head-weight w`` adds ``w mean(relu(-m - 1))`` on the kernel map
``m``: the head's sharp softplus has an exactly zero gradient below about -10, and a run
whose discriminator drives the whole map there outputs an all-zero kernel for good (seen
at sf 4: kernel L1 stuck at 1.0 from step 600); the hinge keeps the map where gradients live.
``--level-input`` builds the U-Net with the spectrum's level planes (:class:`s2k.S2KConfig`).

Data (both): kernels from a pool drawn from all three families (Gaussian, motion,
disk; equal weights; at sf 3 and 4 a fifth of it is KernelNet's §3.4 extension, sf 2
kernels self-convolved); HR patches from :class:`data.HRPatchSampler` (half natural,
half dead leaves, of which ``--texture-prob`` goes to procedural textures); LR images
made on the fly with :func:`degrade.degrade_torch`, white noise U(0, ``noise_max``)
and 8-bit quantisation. Validation uses a fixed set drawn from the same training
sources with seed ``seed + 1`` (never the test set). ``--pool FILE`` (`mkn pool build`)
replaces the procedural kernels: a seeded fifth of the file's kernels (at most
``val_size``) validates, the rest trains (with ``--finetune``: a camera's own kernels).

``--finetune`` starts from the shipped weights the run would replace, ``--start-from RUN``
from another run's best weights (the run folder must be kept: the shipped record names its
``best.pt`` and sha256); both with a fresh optimiser.

Under ``torchrun --nproc-per-node N`` the run is DistributedDataParallel (:mod:`distributed`):
each rank trains on its own pairs, rank 0 validates, logs and checkpoints, and the last
log record holds every rank's weight digest (the run fails if they differ).

Everything is seeded. A checkpoint (networks, optimisers, stage, step, RNG states) is
written atomically every ``ckpt_every`` steps; ``--resume`` continues from it exactly.
The log is JSON lines in ``OUT/log.jsonl``. ``--ship`` copies the best-validation
weights, the log and a record of the exact command next to the package's weights.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .camera import TRAINING_RANGES, camera_mix
from .data import HRPatchSampler, training_batch
from .degrade import decimate, degrade_torch, quantize_8bit
from .imio import atomic_output
from .kernels import FAMILIES, KernelPool
from .models import kernelnet as kn
from .models import s2k
from .models.registry import weights_path


@dataclass
class TrainConfig:
    """Schedule and data settings of one training run."""

    model: str = "kernelnet"
    sf: int = 2
    config: str = "mobile"
    seed: int = 0
    patch_lr: int = 96          # LR patch side; HR patch = sf x this
    batch: int = 16
    pretrain_steps: int = 1500  # KernelNet's gradient-estimator stage
    steps: int = 4000           # main stage (KernelNet end to end; S2K GAN)
    refine_steps: int = 0       # KernelNet: refinement-only stage on cached FFT-2 outputs (0 = none)
    refine_cache: int = 16000   # KernelNet: training pairs cached for that stage
    refine_batch: int = 64
    lr: float = 1e-3            # Adam, cosine-decayed to 1 % within each stage
    adv_weight: float = 1.0     # S2K's λ2; 0 trains without the discriminator
    noise_max: float = 0.005    # LR noise sigma ~ U(0, noise_max)
    texture_prob: float = 0.0   # share of HR patches from procedural textures (taken from dead leaves' 0.5)
    live_head_weight: float = 0.0  # S2K: hinge keeping the kernel map above -1 (0 = off, as in the first runs)
    level_input: bool = False   # S2K: the log spectrum's level (mean, std) as U-Net input planes (S2KConfig)
    fft1_threshold: float | None = None  # KernelNet: FFT-1 threshold (None = the config's)
    fft1_threshold_mode: str | None = None  # KernelNet: a key of kernelnet.THRESHOLD_MODES (None = the config's)
    fft1_solver: str | None = None  # KernelNet: a key of kernelnet.FFT1_SOLVERS (None = the config's)
    fft1_lambda_init: float | None = None  # KernelNet: starting lambda of that solver (None = the config's)
    refine_arch: str | None = None  # KernelNet: a key of kernelnet.REFINEMENTS (None = the config's)
    grad_arch: str | None = None    # KernelNet: a key of kernelnet.GRADIENT_ARCHS (None = the config's)
    grad_channels: int | None = None  # KernelNet: gradient-estimator width (None = the config's)
    camera: bool = False        # camera degradation (camera.TRAINING_RANGES) for training and validation
    camera_clean_prob: float = TRAINING_RANGES.clean_prob  # camera run: share of lab-degraded training pairs
    finetune: bool = False      # start from the shipped weights of this name/config/sf (fresh optimiser)
    start_from: str | None = None  # a fine-tune that starts from this run folder's best.pt instead
    distill: bool = False       # KernelNet fine-tune: pretrain the gradient CNN on the start weights' gradient CNN
    pool: str | None = None     # a kernel pool file (`mkn pool build`) instead of the procedural families
    family_weights: str | None = None  # procedural training pool's family weights, "gaussian=2,motion=1,disk=1"
                                       # (None = equal; validation always draws the families equally)
    pool_size: int = 3000
    extension_fraction: float = 0.2  # sf 3/4: share of the pool made from sf 2 kernels (§3.4)
    val_size: int = 96
    val_every: int = 250
    ckpt_every: int = 100
    log_every: int = 25
    bank_size: int = 48
    threads: int = 2
    device: str = "cpu"         # "cuda": this rank's GPU (torchrun's LOCAL_RANK)

    def __post_init__(self) -> None:
        if self.refine_steps and self.model != "kernelnet":
            raise ValueError("--refine-steps is a KernelNet stage (it trains the refinement module)")
        if self.level_input and self.model != "s2k":
            raise ValueError("--level-input is an S2K option (the U-Net's spectrum-level planes)")
        if self.grad_channels is not None and self.grad_channels < 1:
            raise ValueError(f"--grad-channels must be a positive width, not {self.grad_channels}")
        if not 0 <= self.camera_clean_prob <= 1:
            raise ValueError(f"--camera-clean-prob must be in [0, 1], not {self.camera_clean_prob}")
        if self.distill and (self.model != "kernelnet" or not (self.finetune or self.start_from)):
            raise ValueError("--distill is a KernelNet fine-tune's option (--finetune or --start-from): the start "
                             "weights' gradient CNN is the teacher")
        if self.start_from is not None and self.finetune:
            raise ValueError("--start-from is a fine-tune from a run's weights; --finetune starts from the shipped "
                             "ones: pass one of them")
        if self.family_weights is not None:
            if self.pool:
                raise ValueError("--family-weights weighs the procedural families; a --pool file has its own")
            self.family_weight_map()
        if not 0 <= self.texture_prob <= 0.5:
            raise ValueError(f"--texture-prob must be in [0, 0.5] (it is taken from the dead leaves' half "
                             f"of the HR patches), not {self.texture_prob}")

    def family_weight_map(self) -> dict[str, float] | None:
        """``family_weights`` parsed: ``{family: weight}`` over every family of
        :data:`kernels.FAMILIES` (``None`` = equal). Raises ``ValueError`` on an unknown or
        missing family or a weight that is not positive."""
        if self.family_weights is None:
            return None
        weights = {}
        for item in self.family_weights.split(","):
            name, _, value = item.partition("=")
            try:
                weights[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--family-weights {self.family_weights!r}: {item!r} is not family=weight") from None
        if set(weights) != set(FAMILIES) or min(weights.values()) <= 0:
            raise ValueError(f"--family-weights {self.family_weights!r}: give each of {', '.join(FAMILIES)} "
                             "a positive weight")
        return weights

    @property
    def shipped_name(self) -> str:
        """Registry name the weights of this run ship under."""
        return "s2k-noadv" if self.model == "s2k" and self.adv_weight == 0 else self.model


def _kernel_l1(k: torch.Tensor, k_gt: torch.Tensor) -> torch.Tensor:
    """``(B, 1, K, K)`` vs ``(B, K, K)`` -> ``(B,)`` sums of absolute differences."""
    return (k[:, 0] - k_gt).abs().sum(dim=(-2, -1))


def _grad_target(hr: torch.Tensor, sf: int) -> torch.Tensor:
    return kn.image_gradients(decimate(hr, sf))


def _cosine(base: float, frac: float) -> float:
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


class Recipe:
    """What every recipe shares: each stage trains on fresh pairs from ``draw``; a module a
    stage trains is called through :meth:`par` (DDP under torchrun, itself otherwise)."""

    ranks = distributed.Ranks()

    def par(self, module: nn.Module) -> nn.Module:
        """``module`` as this run trains it (:func:`distributed.parallel`, made once per module)."""
        cache = self.__dict__.setdefault("_parallel", {})
        if id(module) not in cache:
            cache[id(module)] = distributed.parallel(module, self.ranks)
        return cache[id(module)]

    def begin_stage(self, stage: str, step: int, draw, out: Path) -> None:
        """Called when ``stage`` starts or resumes at ``step`` (``draw()`` gives fresh pairs)."""

    def batch(self, stage: str, draw) -> tuple:
        """The next ``(lr, hr, k_gt)`` of ``stage``."""
        return draw()


KERNELNET_ARCH_OPTIONS = {"fft1_threshold": "threshold", "fft1_threshold_mode": "threshold_mode",
                          "fft1_solver": "fft1_solver", "refine_arch": "refine_arch", "grad_arch": "grad_arch",
                          "grad_channels": "grad_channels"}
"""TrainConfig option -> the KernelNetConfig field it sets (``None`` keeps the config's)."""


class KernelNetRecipe(Recipe):
    """KernelNet: ``pretrain`` (gradient estimator, L1 on sharp gradients), ``e2e``, and
    ``refine`` (refinement alone on cached FFT-2 outputs) when ``refine_steps > 0``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        chosen = {field: getattr(cfg, option) for option, field in KERNELNET_ARCH_OPTIONS.items()
                  if getattr(cfg, option) is not None}
        mcfg = replace(kn.CONFIGS[cfg.config], **chosen)
        if cfg.fft1_lambda_init is not None:
            mcfg = replace(mcfg, **{mcfg.lambda_init_field: cfg.fft1_lambda_init})
        self.model = kn.KernelNet(cfg.sf, mcfg)
        self.stages_of = distributed.StagesOf(self.model)
        self.nets = {"model": self.model}
        self.stages = ("pretrain", "e2e") + (("refine",) if cfg.refine_steps else ())
        self.cache: dict[str, torch.Tensor] = {}
        self.teacher: nn.Module | None = None  # ``distill``: the start weights' gradient CNN (set by the Trainer)

    def stage_steps(self, stage: str) -> int:
        return {"pretrain": self.cfg.pretrain_steps, "e2e": self.cfg.steps, "refine": self.cfg.refine_steps}[stage]

    def optimizers(self, stage: str) -> dict[str, torch.optim.Optimizer]:
        params = {"pretrain": self.model.gradient, "e2e": self.model, "refine": self.model.refine}[stage].parameters()
        return {"model": torch.optim.Adam(params, lr=self.cfg.lr)}

    def begin_stage(self, stage: str, step: int, draw, out: Path) -> None:
        """``refine``: build the cache of ``(k_coarse (N,1,K,K), k_gt (N,K,K))`` with the
        frozen front end at the stage's first step, or reload it when resuming."""
        if stage != "refine":
            return
        path = out / ("refine_cache.pt" if self.ranks.main else f"refine_cache.rank{self.ranks.rank}.pt")
        if step and self.ranks.main and not path.exists():
            raise FileNotFoundError(f"{path} is missing; the refine stage cannot resume without it")
        if path.exists():
            self.cache = torch.load(path, weights_only=True, map_location=next(self.model.parameters()).device)
            return
        coarse, kernels = [], []
        self.model.eval()
        with torch.no_grad():
            for _ in tqdm(range(-(-self.cfg.refine_cache // self.cfg.batch)), desc="refine cache", mininterval=5,
                          disable=not self.ranks.main):
                lr_img, _, k_gt = draw()
                coarse.append(self.model.stages(lr_img)["k_coarse"])
                kernels.append(k_gt)
        self.model.train()
        self.cache = {"k_coarse": torch.cat(coarse), "k_gt": torch.cat(kernels)}
        with atomic_output(path) as tmp:
            torch.save(self.cache, tmp)

    def batch(self, stage: str, draw) -> tuple:
        if stage != "refine":
            return draw()
        idx = torch.randint(len(self.cache["k_gt"]), (self.cfg.refine_batch,))
        return self.cache["k_coarse"][idx], None, self.cache["k_gt"][idx]

    def train_step(self, stage: str, opts: dict, lr_img, hr, k_gt) -> dict[str, float]:
        if stage == "refine":  # lr_img holds cached FFT-2 outputs
            loss = _kernel_l1(self.par(self.model.refine)(lr_img), k_gt).mean()
            parts = {"kernel_l1": loss.item()}
        elif stage == "pretrain":
            grads = kn.image_gradients(lr_img)
            pred = self.par(self.model.gradient)(grads)
            if self.teacher is not None:
                with torch.no_grad():
                    target = self.teacher(grads)
            else:
                target = _grad_target(hr, self.cfg.sf)
            loss = (pred - target).abs().mean()
            parts = {"grad_l1": loss.item()}
        else:
            out = self.par(self.stages_of)(lr_img)
            l1 = _kernel_l1(out["kernel"], k_gt).mean()
            coarse = _kernel_l1(out["k_coarse"], k_gt).mean()
            loss = l1 + 0.5 * coarse
            parts = {"kernel_l1": l1.item(), "coarse_l1": coarse.item()}
        _descend(loss, opts["model"], self.model)
        return parts

    def val_extras(self, out: dict, k_gt, hr) -> dict[str, torch.Tensor]:
        return {"coarse_l1": _kernel_l1(out["k_coarse"], k_gt),
                "grad_l1": (out["grads"] - _grad_target(hr, self.cfg.sf)).abs().mean(dim=(1, 2, 3))}


class S2KRecipe(Recipe):
    """S2K: one ``gan`` stage, generator + conditional patch discriminator (LSGAN)."""

    stages = ("gan",)
    L1_WEIGHT, TV_WEIGHT = 100.0, 1.0

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        mcfg = replace(s2k.CONFIGS[cfg.config], level_input=cfg.level_input)
        self.model = s2k.S2K(cfg.sf, mcfg)
        self.stages_of = distributed.StagesOf(self.model)
        self.nets = {"model": self.model}
        if cfg.adv_weight > 0:
            self.disc = s2k.PatchDiscriminator(mcfg.disc_channels)
            self.nets["disc"] = self.disc

    def stage_steps(self, stage: str) -> int:
        return self.cfg.steps

    def optimizers(self, stage: str) -> dict[str, torch.optim.Optimizer]:
        return {name: torch.optim.Adam(net.parameters(), lr=self.cfg.lr, betas=(0.5, 0.999))
                for name, net in self.nets.items()}

    def train_step(self, stage: str, opts: dict, lr_img, hr, k_gt) -> dict[str, float]:
        out = self.par(self.stages_of)(lr_img)
        k, spec = out["kernel"], out["spectrum"]
        l1 = (k[:, 0] - k_gt).abs().mean()
        loss = self.L1_WEIGHT * l1 + self.TV_WEIGHT * s2k.total_variation(k) / k.shape[-1] ** 2
        if self.cfg.live_head_weight:
            loss = loss + self.cfg.live_head_weight * torch.relu(-out["kernel_map"] - 1).mean()
        parts = {"kernel_l1": _kernel_l1(k, k_gt).mean().item()}
        if "disc" in self.nets:
            adv = ((self.disc(spec, k) - 1) ** 2).mean()  # the discriminator's grads from this are dropped
            loss = loss + self.cfg.adv_weight * adv
            parts["adv"] = adv.item()
        _descend(loss, opts["model"], self.model)
        if "disc" in self.nets:
            spec, k = spec.detach(), k.detach()
            disc = self.par(self.disc)
            d_loss = 0.5 * (((disc(spec, k_gt[:, None]) - 1) ** 2).mean() + (disc(spec, k) ** 2).mean())
            _descend(d_loss, opts["disc"], self.disc)
            parts["d_loss"] = d_loss.item()
        return parts

    def val_extras(self, out: dict, k_gt, hr) -> dict[str, torch.Tensor]:
        return {}


RECIPES = {"kernelnet": KernelNetRecipe, "s2k": S2KRecipe}


def _descend(loss: torch.Tensor, opt: torch.optim.Optimizer, net: nn.Module) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()


def load_widened(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model``, where a tensor of ``model`` may have more input
    channels (dim 1) than ``state``'s: those get ``state``'s values in the leading channels
    and zeros in the added ones, so the widened model computes what ``state``'s did as long
    as the added inputs follow the old ones. Returns the widened tensors' names; any other
    mismatch (a missing key, another shape) raises."""
    own = model.state_dict()
    if own.keys() != state.keys():
        raise ValueError(f"weights do not match the model: keys {sorted(own.keys() ^ state.keys())}")
    widened = []
    for name, value in state.items():
        target = own[name]
        if target.shape != value.shape:
            if (target.dim() < 2 or target.dim() != value.dim() or target.shape[0] != value.shape[0]
                    or target.shape[2:] != value.shape[2:] or target.shape[1] < value.shape[1]):
                raise ValueError(f"weights do not match the model: {name} {tuple(value.shape)} vs {tuple(target.shape)}")
            value = torch.cat([value, value.new_zeros(value.shape[0], target.shape[1] - value.shape[1],
                                                      *value.shape[2:])], dim=1)
            widened.append(name)
        own[name] = value
    model.load_state_dict(own)
    return widened


class Trainer:
    """One run in ``out``: build the recipe, (resume,) train every stage, validate, log."""

    def __init__(self, cfg: TrainConfig, out: Path, resume: bool = False,
                 ranks: distributed.Ranks = distributed.Ranks(), device: torch.device = torch.device("cpu")):
        if cfg.model not in RECIPES:
            raise ValueError(f"no training recipe for {cfg.model!r}; choose from {sorted(RECIPES)}")
        self.cfg, self.out, self.ranks, self.device = cfg, Path(out), ranks, device
        if not resume and (self.out / "log.jsonl").exists():
            raise FileExistsError(f"{self.out} already holds a run; pass --resume to continue it")
        distributed.barrier(ranks)  # every rank has looked before rank 0 writes
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.recipe = RECIPES[cfg.model](cfg)
        self.recipe.ranks = ranks
        self.model = self.recipe.model
        for net in self.recipe.nets.values():
            net.to(device)
        self.pool, self.val_pool, self.pool_sha256 = self._pools()
        self.sampler = HRPatchSampler(cfg.sf * cfg.patch_lr, self.rng, dead_leaves_prob=0.5 - cfg.texture_prob,
                                      bank_size=cfg.bank_size, texture_prob=cfg.texture_prob)
        self.val, self.val_clean = self._validation_sets()
        if not ranks.main:  # rank 0 draws what a one-process run draws; the others their own pairs
            self._reseed(0)
        self.stage, self.step = self.recipe.stages[0], 0
        self.best_val = math.inf
        self.opts = self.recipe.optimizers(self.stage)
        start_model = self._start_model() if cfg.finetune or cfg.start_from else None
        if cfg.distill:
            self.recipe.teacher = start_model[2].gradient.to(device).eval().requires_grad_(False)
        ckpt = self.out / "checkpoint.pt"
        if resume and ckpt.exists():
            self._load(ckpt)
        else:
            start = self._load_start(*start_model) if start_model else None
            self._log({"stage": "setup", "train_config": asdict(cfg), "pool_families":
                       {f: int(n) for f, n in zip(*np.unique(self.pool.families, return_counts=True))},
                       "pool_sha256": self.pool_sha256, "world_size": ranks.world_size,
                       "natural_sources": self.sampler.natural_sources, "start_weights": start})
            if ranks.main:
                self._log({"stage": "shipped-baseline", "validation": self.shipped_baseline()})

    def _reseed(self, step: int) -> None:
        """Rank ``r > 0``: its own data and torch streams, from ``(seed, r, step)``."""
        self.rng.bit_generator.state = np.random.default_rng([self.cfg.seed, self.ranks.rank, step]).bit_generator.state
        torch.manual_seed(self.cfg.seed + 1_000_003 * self.ranks.rank + step)

    def _start_model(self) -> tuple[str, Path, nn.Module]:
        """``(flag, weights file, model)`` a fine-tune starts from: the shipped weights this
        run would replace (``finetune``) or the best weights of the run folder ``start_from``
        (built as that run's logged config says)."""
        cfg = self.cfg
        if cfg.start_from:
            path = Path(cfg.start_from) / "best.pt"
            if not path.is_file() or not path.with_name("log.jsonl").is_file():
                raise FileNotFoundError(f"--start-from {cfg.start_from}: no best.pt and log.jsonl there "
                                        "(give a run folder of `mkn train`)")
            start = self._model_of_run(Path(cfg.start_from))
            start.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
            return "--start-from", path, start
        from .models import create_model
        path = weights_path(cfg.shipped_name, cfg.config, cfg.sf)
        if not path.exists():
            raise FileNotFoundError(f"--finetune: no shipped weights at {path}")
        return "--finetune", path, create_model(cfg.shipped_name, cfg.sf, cfg.config)

    def _load_start(self, flag: str, path: Path, start: nn.Module) -> dict:
        """Load ``start``'s weights (:meth:`_start_model`) into the model. They may differ
        from this run's architecture only where its config allows: ``WIDENING`` (added
        inputs start at zero weight) and ``RESTAGING`` (those modules start afresh). Returns
        the log's record of the start (file, sha256, widened and restaged tensors)."""
        ours, theirs = asdict(self.model.config), asdict(start.config)
        widening = getattr(self.model.config, "WIDENING", ())
        restaging = getattr(self.model.config, "RESTAGING", {})
        diff = [k for k in ours if ours[k] != theirs[k]]
        if any(k not in restaging and (k not in widening or not ours[k]) for k in diff):
            text = ", ".join(f"{k} {theirs[k]!r} (this run {ours[k]!r})" for k in diff)
            allowed = [*(f"add {k}" for k in widening), *(f"change {k}" for k in restaging)]
            raise ValueError(f"{flag}: {path} is built with {text}; pass the same options"
                             + (f" (a fine-tune may {', '.join(allowed)})" if allowed else ""))
        own = self.model.state_dict()
        prefixes = tuple(restaging[k] for k in diff if k in restaging)
        restaged = [name for name in own if prefixes and name.startswith(prefixes)]
        state = {name: value for name, value in start.state_dict().items()
                 if not (prefixes and name.startswith(prefixes))}
        state.update({name: own[name] for name in restaged})
        widened = load_widened(self.model, state)
        return {"weights": path.name if flag == "--finetune" else str(path),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "widened": widened, "restaged": restaged}

    def _model_of_run(self, run: Path) -> nn.Module:
        """The model run folder ``run`` trained, freshly built from its log's setup record;
        ValueError if it is another model or sf than this run's."""
        setup = json.loads((run / "log.jsonl").read_text().splitlines()[0])["train_config"]
        known = {f.name for f in fields(TrainConfig)}
        how_it_started = ("finetune", "start_from", "distill")  # not the architecture, and not valid alone
        theirs = TrainConfig(**{k: v for k, v in setup.items() if k in known and k not in how_it_started})
        if (theirs.model, theirs.sf) != (self.cfg.model, self.cfg.sf):
            raise ValueError(f"--start-from {run}: a {theirs.model} sf {theirs.sf} run, not {self.cfg.model} "
                             f"sf {self.cfg.sf}")
        return RECIPES[theirs.model](theirs).model

    # -- data -------------------------------------------------------------------
    def _pools(self) -> tuple[KernelPool, KernelPool | None, str | None]:
        """``(training pool, validation kernels, pool file sha256)``. Procedural (no ``pool``
        file): all three families, weighted by ``family_weights`` (default equal); at sf 3/4
        ``extension_fraction`` of the pool is KernelNet's §3.4 extension (self-convolved sf 2 kernels); validation draws
        its own kernels (``None``). A ``pool`` file: a seeded split, ``min(val_size, N / 5)``
        kernels held out for validation and the rest trained on."""
        cfg = self.cfg
        if cfg.pool:
            pool, digest = KernelPool.load(cfg.pool), hashlib.sha256(Path(cfg.pool).read_bytes()).hexdigest()
            if pool.sf != cfg.sf:
                raise ValueError(f"--pool {cfg.pool}: a pool of sf {pool.sf} kernels, not {cfg.sf}")
            n_val = min(cfg.val_size, len(pool) // 5)
            if n_val < 1:
                raise ValueError(f"--pool {cfg.pool}: {len(pool)} kernels; at least 5 are needed (1 in 5 validates)")
            order = np.random.default_rng(cfg.seed).permutation(len(pool))
            part = lambda idx: KernelPool(pool.sf, pool.kernels[idx], pool.families[idx])  # noqa: E731
            return part(order[n_val:]), part(order[:n_val]), digest
        n_ext = int(cfg.pool_size * cfg.extension_fraction) if cfg.sf != 2 else 0
        pool = KernelPool.generate(cfg.sf, cfg.pool_size - n_ext, self.rng, cfg.family_weight_map())
        if n_ext:
            pool = KernelPool.concat([pool, KernelPool.extended_from_sf2(KernelPool.generate(2, n_ext, self.rng),
                                                                          cfg.sf)])
        return pool, None, None

    def _validation_sets(self) -> tuple[tuple, tuple | None]:
        """``(val, val_clean)``: ``val_size`` fixed pairs ``(lr, hr, k, families)`` from the
        training sources (seed ``seed + 1``) with the lab degradation — or, in a camera
        run, the camera mix of :data:`camera.TRAINING_RANGES`, and then ``val_clean`` holds
        the same pairs with the lab degradation (else ``None``)."""
        rng = np.random.default_rng(self.cfg.seed + 1)
        pool = self.val_pool or KernelPool.generate(self.cfg.sf, self.cfg.val_size, rng)
        hr = HRPatchSampler(self.cfg.sf * self.cfg.patch_lr, rng, bank_size=8).batch(len(pool))
        k = torch.from_numpy(pool.kernels)
        clean = degrade_torch(hr, k, self.cfg.sf)
        lab = (quantize_8bit(clean), hr, k, pool.families)
        if self.cfg.camera:
            gen = torch.Generator().manual_seed(self.cfg.seed + 1)
            val, val_clean = (camera_mix(clean, lab[0], TRAINING_RANGES, rng, gen), hr, k, pool.families), lab
        else:
            val, val_clean = lab, None
        on_device = lambda v: v and (*(t.to(self.device) for t in v[:3]), v[3])  # noqa: E731
        return on_device(val), on_device(val_clean)

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``batch`` fresh training pairs (see :func:`data.training_batch`)."""
        ranges = replace(TRAINING_RANGES, clean_prob=self.cfg.camera_clean_prob) if self.cfg.camera else None
        batch = training_batch(self.sampler, self.pool, self.cfg.batch, self.cfg.noise_max, ranges)
        return tuple(t.to(self.device) for t in batch)

    # -- validation, logging, checkpoints ---------------------------------------
    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> dict:
        """Mean kernel L1 (overall and per family) of ``model`` (default: the one in
        training) on the fixed validation set, plus the recipe's extra measures (KernelNet:
        FFT-2 output L1, gradient L1). A camera run also reports ``val_clean_l1`` on the
        lab-degradation set (the model selection uses ``val_l1``, the camera set's)."""
        model = model or self.model
        was_training = model.training
        model.eval()
        vals = self._scores(self.val, model)
        res = {f"val_{name}": float(v.mean()) for name, v in vals.items()}
        families = FAMILIES if self.val_pool is None else sorted(set(self.val[3]))
        res.update({f"val_l1_{f}": float(vals["l1"][self.val[3] == f].mean()) for f in families})
        if self.val_clean is not None:
            res["val_clean_l1"] = float(self._scores(self.val_clean, model)["l1"].mean())
        model.train(was_training)
        return res

    def shipped_baseline(self) -> dict | None:
        """:meth:`validate` of the weights shipped under this run's name, config and sf
        (``None`` when there are none): the bar a run must clear to replace them."""
        path = weights_path(self.cfg.shipped_name, self.cfg.config, self.cfg.sf)
        if not path.exists():
            return None
        from .models import create_model
        return {"weights": path.name, **self.validate(create_model(self.cfg.shipped_name, self.cfg.sf,
                                                                   self.cfg.config))}

    def _scores(self, val: tuple, model: nn.Module) -> dict[str, np.ndarray]:
        lr, hr, k, _ = val
        cols: dict[str, list] = {}
        for i in range(0, len(lr), 32):
            out = model.stages(lr[i:i + 32])
            batch = {"l1": _kernel_l1(out["kernel"], k[i:i + 32]),
                     **self.recipe.val_extras(out, k[i:i + 32], hr[i:i + 32])}
            for name, v in batch.items():
                cols.setdefault(name, []).append(v)
        return {name: torch.cat(v).cpu().numpy() for name, v in cols.items()}

    def _log(self, record: dict) -> None:
        """Append ``record`` to ``OUT/log.jsonl`` (rank 0; the other ranks log nothing)."""
        if not self.ranks.main:
            return
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save(self) -> None:
        if not self.ranks.main:
            return
        state = {"nets": {n: net.state_dict() for n, net in self.recipe.nets.items()},
                 "opts": {n: o.state_dict() for n, o in self.opts.items()}, "stage": self.stage,
                 "step": self.step, "best_val": self.best_val, "np_rng": self.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "train_config": asdict(self.cfg),
                 "world_size": self.ranks.world_size, "pool_sha256": self.pool_sha256}
        with atomic_output(self.out / "checkpoint.pt") as tmp:
            torch.save(state, tmp)

    def _load(self, path: Path) -> None:
        """Continue from a checkpoint. Rank 0 takes up the saved random streams (a one-process
        run resumes exactly); the other ranks reseed (:meth:`_reseed`), so a run may resume
        with another number of processes."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("pool_sha256") != self.pool_sha256:
            raise ValueError(f"{path}: the checkpoint was trained on another kernel pool than --pool {self.cfg.pool}")
        for name, net in self.recipe.nets.items():
            net.load_state_dict(state["nets"][name])
        self.stage, self.step, self.best_val = state["stage"], state["step"], state["best_val"]
        self.opts = self.recipe.optimizers(self.stage)
        for name, opt in self.opts.items():
            opt.load_state_dict(state["opts"][name])
        if self.ranks.main:
            self.rng.bit_generator.state = state["np_rng"]
            torch.set_rng_state(state["torch_rng"].cpu())
        else:
            self._reseed(self.step)
        self._log({"stage": "resume", "from_stage": self.stage, "step": self.step,
                   "world_size": self.ranks.world_size, "checkpoint_world_size": state.get("world_size", 1)})

    def _save_best(self, val: dict) -> None:
        if self.ranks.main and self.stage == self.recipe.stages[-1] and val["val_l1"] < self.best_val:
            self.best_val = val["val_l1"]
            with atomic_output(self.out / "best.pt") as tmp:
                torch.save({"model": self.model.state_dict(), "val": val, "step": self.step}, tmp)

    # -- the loop ---------------------------------------------------------------
    def run(self) -> dict:
        """Train the remaining steps of every stage; returns the last validation record."""
        self.model.train()
        stages = list(self.recipe.stages)
        val = {}
        for stage in stages[stages.index(self.stage):]:
            if stage != self.stage:
                self.stage, self.step = stage, 0
                self.opts = self.recipe.optimizers(stage)
            total = self.recipe.stage_steps(stage)
            if self.step < total:  # a finished stage needs nothing set up (a run resumed to ship)
                self.recipe.begin_stage(stage, self.step, self._draw, self.out)
            t0 = time.time()
            bar = tqdm(total=total, initial=self.step, desc=f"{self.cfg.model} sf{self.cfg.sf} {stage}",
                       dynamic_ncols=True, mininterval=5, disable=not self.ranks.main)
            while self.step < total:
                for opt in self.opts.values():
                    for g in opt.param_groups:
                        g["lr"] = _cosine(self.cfg.lr, self.step / total)
                lr_img, hr, k = self.recipe.batch(stage, self._draw)
                parts = self.recipe.train_step(stage, self.opts, lr_img, hr, k)
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.log_every == 0:
                    self._log({"stage": stage, "step": self.step, **parts,
                               "lr": _cosine(self.cfg.lr, self.step / total), "sec": round(time.time() - t0, 1)})
                    bar.set_postfix(parts)
                if self.ranks.main and (self.step % self.cfg.val_every == 0 or self.step == total):
                    val = self.validate()
                    self._log({"stage": stage, "step": self.step, **val})
                    self._save_best(val)
                if self.step % self.cfg.ckpt_every == 0 or self.step == total:
                    self._save()
            bar.close()
        digests = distributed.digests_of_all_ranks(self.model, self.ranks)
        if len(set(digests)) > 1:
            raise RuntimeError(f"the ranks' weights differ after training: {digests}")
        if not val and self.ranks.main:  # resumed after the end: nothing left to train
            val = self.validate()
        elif self.ranks.main:
            self._log({"stage": "done", "best_val_l1": self.best_val, "world_size": self.ranks.world_size,
                       "weights_sha256_per_rank": digests})
        return val

    def ship(self) -> Path:
        """Copy ``best.pt`` (the state dict, plus the model's config that
        :func:`models.registry.load_pretrained` builds it from), the log and a record of the
        run (with the one command that reproduces it and, for a fine-tune, the sha256 of the
        weights it started from) to the package's weights folder; returns the weights path."""
        dest = weights_path(self.cfg.shipped_name, self.cfg.config, self.cfg.sf)
        dest.parent.mkdir(parents=True, exist_ok=True)
        best = torch.load(self.out / "best.pt", map_location="cpu", weights_only=True)
        with atomic_output(dest) as tmp:
            torch.save({"model": best["model"], "model_config": asdict(self.model.config)}, tmp)
        log = (self.out / "log.jsonl").read_bytes()
        with atomic_output(dest.with_suffix(".log")) as tmp:
            tmp.write_bytes(log)
        record = {"command": canonical_command(self.cfg), "seed": self.cfg.seed, "train_config": asdict(self.cfg),
                  "best_step": best["step"], "best_validation": best["val"],
                  "torch": torch.__version__, "python": platform.python_version(),
                  "machine": platform.machine(), "threads": self.cfg.threads,
                  "git_commit": _git_commit()}
        setup = json.loads(log.splitlines()[0])
        if setup.get("start_weights"):
            record["start_weights"] = setup["start_weights"]
        with atomic_output(dest.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
        return dest


CLI_OPTIONS = ("seed", "pretrain_steps", "steps", "refine_steps", "refine_cache", "refine_batch", "batch",
               "patch_lr", "threads", "adv_weight", "texture_prob", "live_head_weight", "level_input",
               "fft1_threshold", "fft1_threshold_mode", "fft1_solver", "fft1_lambda_init", "refine_arch", "grad_arch", "grad_channels", "camera",
               "camera_clean_prob", "family_weights",
               "finetune", "start_from", "distill", "lr", "pool", "val_size", "bank_size", "device")


def canonical_command(cfg: TrainConfig) -> str:
    """The one command that reproduces ``cfg`` from scratch (options left at their
    defaults are omitted)."""
    default = TrainConfig()
    changed = [k for k in CLI_OPTIONS if getattr(cfg, k) != getattr(default, k)]
    extra = "".join(f" --{k.replace('_', '-')}" + ("" if isinstance(getattr(cfg, k), bool) else f" {getattr(cfg, k)}")
                    for k in changed)
    return f"mkn train {cfg.model} --sf {cfg.sf} --config {cfg.config}{extra} --ship"


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train(cfg: TrainConfig, out: Path, resume: bool, ship: bool) -> dict:
    """Run (or resume) a training and optionally ship its weights: one process, or one rank
    of a torchrun launch (:mod:`distributed`; rank 0 ships). Returns rank 0's last
    validation record (``{}`` on the other ranks)."""
    ranks, device = distributed.start(cfg.device)
    try:
        trainer = Trainer(cfg, out, resume, ranks, device)
        val = trainer.run()
        if ship and ranks.main:
            print(f"shipped {trainer.ship()}")
        distributed.barrier(ranks)  # leave together: a rank torn down while rank 0 still logs can abort it (gloo)
        return val
    finally:
        distributed.stop()
