"""Reconstruction methods (compose physics, solvers and nets) and their registry."""

from mrirecon.methods import automap, classical, dbp, flow_prior, modl, sparsity, unet_image  # noqa: F401  (register the methods)
from mrirecon.methods.base import REGISTRY, Method, build_method

__all__ = ["REGISTRY", "Method", "build_method"]
