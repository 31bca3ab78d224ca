"""The command line: the `mrirecon` entry point (main.py), its help text, the override checks
made before Hydra runs, and sweeps (the only layer that speaks in config keys)."""

from mrirecon.cli.app import main

__all__ = ["main"]
