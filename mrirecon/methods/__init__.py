"""Reconstruction methods (compose physics, solvers and nets) and their registry."""

from mrirecon.methods import classical  # noqa: F401  (registers zero_filled, cg_sense)
from mrirecon.methods.base import REGISTRY, Method, build_method

__all__ = ["REGISTRY", "Method", "build_method"]
