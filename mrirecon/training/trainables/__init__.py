"""Trainable families (what `mrirecon train` fits) and their registry, keyed by checkpoint kind.

Every module of this package is imported when the registry is first read (mrirecon/registry.py),
so a family is one module with `@register_trainable`."""

from mrirecon.training.trainables.base import (
    TRAINABLES,
    Family,
    Trainable,
    family_for,
    rebuild,
    register_trainable,
)

__all__ = ["TRAINABLES", "Family", "Trainable", "family_for", "rebuild", "register_trainable"]
