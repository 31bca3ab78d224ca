"""The references a study's stages make to each other, as OmegaConf resolvers inside their overrides:

- `${stage:NAME}`: what stage NAME made that the next stage reads: a preprocess stage's processed
  file (`<its folder>/<variant>.h5`; with a sweep over `data`, `<its folder>/${data.name}.h5`, which
  each point of the reading stage resolves to its own variant), a train stage's
  `checkpoints/best.pt` (a train sweep has one per point: follow it with `each:`), a reconstruct
  or evaluate stage's folder (what `evaluate runs=[...]` reads).
- `${stage:NAME,dir}`: the stage's folder, whatever it ran (e.g. a train sweep's, for evaluate's
  training curves).
- `${best:NAME,KEY}`: the value of KEY (e.g. `method.lam`) at the point of reconstruct stage NAME
  whose objective (reconstruct's `objective`, summary.json) is best: a choice made on the split
  that stage reconstructed (e.g. val).

What a reference gives depends on the context in force (`using`): `Placeholders` outside a study
run (`--cfg job --resolve`, the config checks) and for the hash (a stage's identity is its
upstream's record, not where it lies), the finished stages (`runner.Outputs`) when running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from omegaconf import OmegaConf

PLACEHOLDER = "@stage"  # a placeholder path: what a reference stands for before the stage ran
WHATS = ("output", "dir")


class Context(Protocol):
    """What `${stage:...}` and `${best:...}` resolve to."""

    def stage(self, name: str, what: str) -> str: ...

    def best(self, name: str, key: str) -> str: ...


def placeholder(name: str, what: str = "output") -> str:
    """The placeholder of `${stage:name,what}`: a path-like word Hydra's override parser takes."""
    return f"{PLACEHOLDER}/{name}" + ("" if what == "output" else f"/{what}")


class Placeholders:
    """References as placeholders (`named`: the stages referenced, in order); `${best:...}` as a
    placeholder too, or through `best` when given (the hash needs the chosen value)."""

    def __init__(self, best: Callable[[str, str], str] | None = None) -> None:
        self.named: list[str] = []
        self._best = best

    def stage(self, name: str, what: str) -> str:
        self.named.append(name)
        return placeholder(name, what)

    def best(self, name: str, key: str) -> str:
        self.named.append(name)
        return self._best(name, key) if self._best is not None else f"{PLACEHOLDER}/{name}/best/{key}"


_ACTIVE: list[Context] = []


@contextlib.contextmanager
def using(context: Context) -> Iterator[Context]:
    """Resolve `${stage:...}` and `${best:...}` through `context` within the block."""
    _ACTIVE.append(context)
    try:
        yield context
    finally:
        _ACTIVE.pop()


def _context() -> Context:
    return _ACTIVE[-1] if _ACTIVE else Placeholders()


def _stage(name: Any, what: Any = "output") -> str:
    if str(what) not in WHATS:
        raise ValueError(f"${{stage:{name},{what}}}: expected ${{stage:NAME}} or ${{stage:NAME,dir}}")
    return _context().stage(str(name), str(what))


def _best(name: Any, key: Any = None) -> str:
    if key is None:
        raise ValueError(f"${{best:{name}}}: name the key too: ${{best:{name},method.lam}}")
    return _context().best(str(name), str(key))


OmegaConf.register_new_resolver("stage", _stage, replace=True)
OmegaConf.register_new_resolver("best", _best, replace=True)
