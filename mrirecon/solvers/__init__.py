"""Iterative solvers on batched complex images."""
