"""mrirecon: a config-driven experiment runner for accelerated multi-coil MRI reconstruction."""

__version__ = "0.1.0"
