"""Trainable families (what `mrirecon train` fits) and their registry, keyed by checkpoint kind."""

from mrirecon.trainables import direct, flow, unrolled  # noqa: F401  (register the families)
from mrirecon.trainables.base import TRAINABLES, Trainable, family_for, rebuild

__all__ = ["TRAINABLES", "Trainable", "family_for", "rebuild"]
