"""`mrirecon <subcommand> [overrides...] [-m]`: dispatch to a Hydra task.

Sets OMP_WAIT_POLICY=PASSIVE and the thread count from `hardware` before torch is imported,
checks the overrides against the configs (one `error:` line and exit 2 when they do not
compose), then hands over to Hydra, so `--help`, `--cfg job`, `-m` and `hydra.run.dir=` work
after the subcommand. A `UserError` raised by a task becomes one `error:` line and exit 2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUBCOMMANDS = {
    "preprocess": "make a dataset variant (bits x scale) from a DeepInPy HDF5 file or the embedded sample",
    "train": "train a learned reconstruction method",
    "reconstruct": "reconstruct a split with one method; write metrics.csv, summary.json, recon.h5, figures",
    "evaluate": "compare runs: results.csv, comparisons.csv (paired statistics), plots, report.html",
    "download": "fetch a public raw data set (dataset=stanford_knees) into dataset.dir, resumable and checked",
}
EXIT_USAGE = 2
_HELP_FLAGS = {"-h", "--help", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def config_dir() -> Path:
    """conf/ inside an installed package (wheel), else the source checkout's top-level conf/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "reconstruct.yaml").is_file():
            return candidate
    raise RuntimeError(f"mrirecon: configuration folder not found next to {here}")


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: mrirecon <subcommand> [key=value ...] [-m] [hydra flags]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    lines += ["", "'mrirecon <subcommand> --help' shows its configuration groups and options."]
    return "\n".join(lines)


def fail(message: str) -> int:
    """Print one `error:` line on stderr; return the usage exit code."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def _overrides(args: list[str]) -> tuple[list[str], bool]:
    """The key=value overrides among `args`, and whether -m/--multirun is present."""
    overrides, multirun, skip = [], False, False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, multirun


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """Replace each sweep (a,b / range(...)) by its first value, so one config can be composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if parsed.is_sweep_override():
            try:
                first = next(iter(parsed.sweep_string_iterator()))
            except Exception:  # glob sweeps need the group's options: leave them to Hydra
                continue
            prefix = "+" if parsed.is_add() else "++" if parsed.is_force_add() else ""
            out.append(f"{prefix}{parsed.get_key_element().lstrip('+~')}={first}")
        else:
            out.append(text)
    return out


def _group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_overrides(subcommand: str, overrides: list[str], multirun: bool) -> str | None:
    """Compose the config once; return a one-line problem description, or None if it composes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for text in overrides:
        key, _, value = text.partition("=")
        group = key.lstrip("+~")
        options = _group_options(group) if group.isidentifier() else []
        bad = [v for v in (value.split(",") if multirun else [value]) if v not in options]
        if options and value and bad:
            return f"unknown {group}={bad[0]} (expected one of: {', '.join(options)})"
    try:
        composed = _first_of_sweeps(overrides) if multirun else overrides
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=subcommand, overrides=composed, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        text = str(exc).strip().splitlines()
        return f"invalid override: {text[0] if text else exc.__class__.__name__}"
    finally:
        GlobalHydra.instance().clear()
    if multirun and "mrirecon.sweeper" in sys.modules:  # hydra/sweeper=optuna: choose on val only
        problem = sys.modules["mrirecon.sweeper"].split_problem(cfg, overrides)
        if problem:
            return problem
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        out = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except OmegaConfBaseException:  # an interpolation only Hydra's run can resolve
        return None
    return _unwritable(key, out)


def _unwritable(key: str, folder: Path) -> str | None:
    """Why `folder` cannot be created or written (None if it can): checked before Hydra
    creates it, so a read-only location gets one error line instead of a traceback."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}: cannot create {folder} ({existing} is a file, not a folder)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}: cannot write {folder} ({existing} is not writable)"
    return None


def _cleanup_run_dir(run_dir: Path) -> None:
    """Remove a run dir that ended in an error if it holds only what Hydra put there (.hydra/
    and the job log). A dir with anything else (a run being resumed) is left untouched."""
    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    for log in run_dir.glob("*.log"):
        log.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only if empty: never removes a user's files


def _task(subcommand: str) -> Callable[[Any], Any]:
    def task(cfg: Any) -> Any:
        threads = int(cfg.hardware.threads) if "hardware" in cfg else 2
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import importlib

        from hydra.core.hydra_config import HydraConfig

        from mrirecon.errors import UserError

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            import torch

            torch.set_num_threads(threads)
            module = importlib.import_module(f"mrirecon.tasks.{subcommand}")
            return module.run(cfg)
        except UserError as exc:
            _cleanup_run_dir(run_dir)
            raise SystemExit(fail(str(exc))) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            if "mrirecon.distributed" in sys.modules:
                sys.modules["mrirecon.distributed"].shutdown()
            if os.environ.get("MRIRECON_RANK_DIR") == str(run_dir):  # see _torchrun_rank_overrides
                shutil.rmtree(run_dir, ignore_errors=True)

    task.__module__ = __name__
    return task


def _torchrun_rank_overrides() -> list[str]:
    """Under torchrun, ranks other than 0 run Hydra in a throw-away folder: rank 0's run dir
    (checkpoints, logs) is the run's, and the training task hands it to every rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0":
        return []
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"mrirecon_rank{os.environ['RANK']}_")
    os.environ["MRIRECON_RANK_DIR"] = folder
    return [f"hydra.run.dir={folder}"]


def _register_sweeper() -> None:
    """hydra/sweeper=optuna: mrirecon's val-split Optuna sweeper, when the `sweep` extra is installed."""
    try:
        from mrirecon.sweeper import register
    except ImportError:
        return
    register()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mrirecon` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    subcommand, rest = args[0], args[1:]
    if subcommand not in SUBCOMMANDS:
        return fail(f"unknown subcommand '{subcommand}' (expected one of: {', '.join(SUBCOMMANDS)})")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _register_sweeper()
    overrides, multirun = _overrides(rest)
    if not _HELP_FLAGS.intersection(rest):
        problem = check_overrides(subcommand, overrides, multirun)
        if problem:
            return fail(problem)

    import hydra

    rank_overrides = _torchrun_rank_overrides()
    if rank_overrides:
        rest = [a for a in rest if not a.startswith("hydra.run.dir=")] + rank_overrides
    sys.argv = [f"mrirecon {subcommand}", *rest]
    hydra.main(config_path=str(config_dir()), config_name=subcommand, version_base="1.3")(_task(subcommand))()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
