"""Kernel estimators. Importing this package registers every model family."""
from . import baselines, kernelnet, s2k  # noqa: F401  (registers models)
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
