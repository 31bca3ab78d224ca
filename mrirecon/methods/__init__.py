"""Reconstruction methods (compose physics, solvers and nets) and their registry.

Every module of this package is imported when the registry is first read (mrirecon/registry.py),
so a method is one module with `@register("<name>")` and its `conf/method/<name>.yaml`.
"""

from mrirecon.methods.base import REGISTRY, Method, build_method, register

__all__ = ["REGISTRY", "Method", "build_method", "register"]
