"""Kernel estimators registered by name (as timm registers models).

Every estimator is a plain ``nn.Module`` with the contract :class:`Estimator`:

* attributes ``sf`` (int) and ``kernel_size`` (odd int, the HR kernel side ``K``);
* ``forward(lr)``: ``(B, 1, H, W)`` float32 LR luma in [0, 1] ->
  ``(B, 1, K, K)`` float32 kernels, each non-negative and summing to 1.

A learned estimator with FFT stages is also a :class:`StagedEstimator`: it names its
stages (``stage_names``, pipeline order, ``kernel`` last), returns them all from
``stages(lr)`` (what export, parity and the error budget read), and switches its spectral
ops between backends (``set_spectral_backend``). Code outside this module asks
``isinstance(model, StagedEstimator)``, never ``hasattr``.

A builder is ``fn(sf: int, config: str, pretrained: bool) -> nn.Module``;
``configs`` names the configurations it accepts (the first is the default).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@runtime_checkable
class Estimator(Protocol):
    """``(B, 1, H, W)`` LR luma in [0, 1] -> ``(B, 1, K, K)`` kernels (sum 1)."""

    sf: int
    kernel_size: int

    def forward(self, lr: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class StagedEstimator(Estimator, Protocol):
    """An :class:`Estimator` with named stages and switchable spectral ops."""

    stage_names: tuple[str, ...]
    int8_float_reason: str      # why its spectral ops stay float in an int8 export (for the manifest)
    full_integer_blocker: str | None  # why its graph cannot be quantised fully integer (None: it can)

    def stages(self, lr: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def set_spectral_backend(self, backend: str) -> "StagedEstimator": ...


@dataclass(frozen=True)
class ModelEntry:
    """A registered estimator: its builder, the configs it accepts (first = default) and
    ``weights_of``, the entry whose shipped files it loads (an ablation such as
    ``kernelnet-norefine`` runs its parent's weights; ``None`` = its own)."""

    name: str
    builder: Callable[[int, str, bool], nn.Module]
    configs: tuple[str, ...]
    weights_of: str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, configs: tuple[str, ...] = ("default",), weights_of: str | None = None):
    """Decorator registering ``builder`` under ``name`` (``weights_of``: see :class:`ModelEntry`)."""
    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, tuple(configs), weights_of)
        return builder
    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ValueError naming the choices if unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"kernelnet:paper"`` -> ``("kernelnet", "paper")``; ``"s2k"`` -> ``("s2k", None)``."""
    name, _, config = spec.partition(":")
    return name, (config or None)


def create_model(name: str, sf: int, config: str | None = None, pretrained: bool = True) -> nn.Module:
    """Build model ``name`` for scale factor ``sf`` in eval mode (``config`` defaults to the
    entry's first); with ``pretrained`` the shipped weights are loaded."""
    entry = model_entry(name)
    config = config or entry.configs[0]
    if config not in entry.configs:
        raise ValueError(f"model {name!r} has configs {entry.configs}, not {config!r}")
    return entry.builder(sf, config, pretrained).eval()


def weights_path(name: str, config: str, sf: int) -> Path:
    """Where the shipped weights of ``name``/``config`` at ``sf`` live: an entry that runs
    another's weights (``weights_of``) maps to that entry's file."""
    owner = _REGISTRY[name].weights_of if name in _REGISTRY and _REGISTRY[name].weights_of else name
    return WEIGHTS_DIR / f"{owner}_{config}_sf{sf}.pt"


def load_pretrained(make: Callable[[Any], nn.Module], config: Any, path: Path) -> nn.Module:
    """``make(cfg)`` with the shipped weights at ``path`` loaded, where ``cfg`` is the
    architecture they were trained with: ``config`` (a config dataclass) updated by the
    ``model_config`` the training script stores beside the state dict. Files shipped
    before it stored one use ``config`` as is. Options such as ``--refine-arch`` change
    the architecture without changing the state-dict keys, so the file, not the named
    config, has to say which architecture it holds."""
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}; train them with `mkn train` "
                                f"(see {path.parent / 'README.md'})")
    not_weights = f"{path} is not a weights file written by `mkn train --ship`"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{not_weights} ({type(e).__name__})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise ValueError(f"{not_weights} (no 'model' state dict)")
    model = make(replace(config, **saved.get("model_config", {})))
    model.load_state_dict(saved["model"])
    return model
