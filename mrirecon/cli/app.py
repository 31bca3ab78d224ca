"""`mrirecon <subcommand> [overrides...] [-m]`: dispatch to a Hydra task.

Sets OMP_WAIT_POLICY=PASSIVE and the thread count from `hardware` before torch is imported,
checks the overrides against the configs (mrirecon/cli/overrides.py: one `error:` line and exit 2
when they cannot work), then hands over to Hydra, so `--cfg job`, `-m` and `hydra.run.dir=`
work after the subcommand; `--help` is the subcommand's own (mrirecon/cli/helptext.py). A
`UserError` raised by a task, or an OS error of Hydra's own writes, becomes one `error:` line
and exit 2, and the run dir is left as it was (mrirecon/io/ownership.py: only what this run made is
removed); in a sweep, a failed point is recorded and the others run (mrirecon/cli/sweeps.py). A
second process into a locked run dir is refused (mrirecon/io/locks.py). SIGTERM is handled as
SIGINT: one `error: interrupted` line, exit code 128 + the signal, no temporary file left.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrirecon import __version__
from mrirecon.cli.configs import config_dir, use_plugin_configs
from mrirecon.cli.overrides import Problem, check, one_line
from mrirecon.registry import PluginError, plugin_conf_dirs

SUBCOMMANDS = {
    "preprocess": "make a dataset variant (bits x scale) from the embedded sample or raw data (DeepInPy, "
    "fastMRI, ISMRMRD, BART .cfl, .npy)",
    "train": "train a learned reconstruction method",
    "reconstruct": "reconstruct a split with one method; write metrics.csv, summary.json, recon.h5, figures",
    "evaluate": "compare runs: results.csv, comparisons.csv (paired statistics), plots, report.html",
    "download": "fetch a public raw data set (dataset=stanford_knees) into dataset.dir, resumable and checked",
    "study": "run a whole study (conf/study/<name>.yaml: preprocess, train, reconstruct, evaluate stages) in order, "
    "skipping stages done earlier for the same config",
}
EXIT_USAGE = 2
_HELP_FLAGS = {"--hydra-help", "--info", "-i", "--shell-completion", "-sc"}
_VERSION_FLAGS = {"--version", "-V"}
_SINGLE_MODE_FLAGS = {"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
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


RERUN_FLAG = "--experimental-rerun"  # Hydra unpickles its FILE argument: code from a file would run


def _names_rerun(arg: str) -> bool:
    """Whether `arg` is Hydra's --experimental-rerun flag, whole or abbreviated as argparse allows
    (`--exp FILE`, `--experimental-r=FILE`)."""
    flag = arg.split("=", 1)[0]
    return len(flag) > 2 and RERUN_FLAG.startswith(flag)


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: mrirecon <subcommand> [key=value ...] [-m] [hydra flags]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    lines += ["", "'mrirecon <subcommand> --help' shows its config groups and keys; 'mrirecon --version' the version."]
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


def _run_task(subcommand: str, cfg: Any, run_dir: Path, multirun: bool) -> Any:
    """`mrirecon.tasks.<subcommand>.run(cfg)`, its result passed on (an optimising sweeper's
    objective). A UserError is one `error:` line and exit 2; in a sweep it goes to the point's
    error.txt, as does a bug (any other exception, with its traceback), the point's result is
    None and the other points still run."""
    import importlib
    import traceback

    from mrirecon.cli import sweeps
    from mrirecon.errors import UserError
    from mrirecon.io.locks import remove_run_dir_temporaries

    sweeps.clear_failure(run_dir)
    remove_run_dir_temporaries(run_dir)  # a killed run's: the run (sweep) dir's lock is ours
    try:
        import torch

        torch.set_num_threads(int(cfg.hardware.threads) if "hardware" in cfg else 2)
        return importlib.import_module(f"mrirecon.tasks.{subcommand}").run(cfg)
    except UserError as exc:
        if multirun:
            return sweeps.record_failure(run_dir, f"error: {' '.join(str(exc).split())}")
        sweeps.LAST.failed = True  # sweeps.finish undoes the run's traces
        raise SystemExit(fail(str(exc))) from None
    except Exception as exc:
        if not multirun:
            raise
        line = f"{sweeps.INTERNAL}: {exc.__class__.__name__}: {' '.join(str(exc).split())}"
        return sweeps.record_failure(run_dir, line, traceback.format_exc())


def _task(subcommand: str) -> Callable[[Any], Any]:
    def task(cfg: Any) -> Any:
        threads = int(cfg.hardware.threads) if "hardware" in cfg else 2  # checked by mrirecon.cli.overrides
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from mrirecon.io import interrupts

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        try:
            with interrupts.terminate_as_interrupt():
                return _run_task(subcommand, cfg, run_dir, hydra_cfg.mode == RunMode.MULTIRUN)
        except KeyboardInterrupt:
            print(f"error: interrupted ({interrupts.name()})", file=sys.stderr)
            raise SystemExit(interrupts.exit_code()) from None
        finally:
            if "mrirecon.training.distributed" in sys.modules:
                sys.modules["mrirecon.training.distributed"].shutdown()
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


def _os_error(exc: OSError, multirun: bool) -> str:
    """An OS error of Hydra's own writes (run dir, .hydra/*.yaml, the log) as one line."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    where = f"cannot write {exc.filename}" if exc.filename else "cannot write the run dir"
    return f"{key}: {where} ({exc.strerror or exc})"


def _run_hydra(subcommand: str, rest: list[str], multirun: bool) -> int:
    """Hand over to Hydra; Hydra's own failures (config errors it finds, an OS error while it
    creates the run dir or writes .hydra/) become one `error:` line and exit 2, and a sweep
    with failed points ends with their summary and exit 2 (1 if a point failed on a bug)."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mrirecon.cli import sweeps

    sweeps.reset()
    sys.argv = [f"mrirecon {subcommand}", *rest]
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's exceptions reach us instead of printing them
    use_plugin_configs()
    try:
        hydra.main(config_path=str(config_dir()), config_name=subcommand, version_base="1.3")(_task(subcommand))()
    except sweeps.Refused as exc:  # the run dir is locked by another process
        return fail(str(exc))
    except OSError as exc:
        if exc.__traceback__ is not None and _raised_in_task(exc):
            raise
        sweeps.undo(_run_dir_of(exc))
        return fail(_os_error(exc, multirun))
    except (HydraException, OmegaConfBaseException) as exc:
        return fail(f"invalid override: {one_line(str(exc))}")
    except SystemExit as exc:  # a task's error line was printed (or --hydra-help, --info ran)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # a sweeper that stops when its points failed (Optuna: all of them)
        if not (multirun and sweeps.collect()):
            raise
        print(sweeps.summary(sweeps.LAST.failures, sweeps.LAST.output_dir), file=sys.stderr)
        print(f"error: the sweep stopped: {exc.__class__.__name__}: {one_line(str(exc))}", file=sys.stderr)
        return 1 if any(f.internal for f in sweeps.LAST.failures) else EXIT_USAGE
    finally:
        sweeps.finish()  # the lock released, a run failed on bad input undone
        GlobalHydra.instance().clear()
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    if sweeps.LAST.failures:
        print(sweeps.summary(sweeps.LAST.failures, sweeps.LAST.output_dir), file=sys.stderr)
        return 1 if any(f.internal for f in sweeps.LAST.failures) else EXIT_USAGE
    return 0


def _run_dir_of(exc: OSError) -> Path | None:
    """The run dir whose .hydra/ file or job log `exc` failed to write, if it names one."""
    if not exc.filename:
        return None
    path = Path(str(exc.filename))
    if path.suffix == ".log":
        return path.parent
    return next((p.parent for p in path.parents if p.name == ".hydra"), None)


def _raised_in_task(exc: BaseException) -> bool:
    """Whether `exc` was raised inside a task's run() (then it is the task's to report)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _run_task.__code__:
            return True
        tb = tb.tb_next
    return False


def _register_sweeper() -> None:
    """hydra/sweeper=optuna: mrirecon's val-split Optuna sweeper, when the `sweep` extra is installed."""
    try:
        from mrirecon.cli.sweeper import register
    except ImportError:
        return
    register()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mrirecon` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if _VERSION_FLAGS.intersection(args):
        print(f"mrirecon {__version__}")
        return 0
    subcommand, rest = args[0], args[1:]
    if subcommand not in SUBCOMMANDS:
        return fail(f"unknown subcommand '{subcommand}' (expected one of: {', '.join(SUBCOMMANDS)})")
    if any(_names_rerun(arg) for arg in rest):
        return fail(
            f"{RERUN_FLAG} is refused: Hydra would unpickle FILE, and loading a pickle runs the code it holds; "
            "rerun a job with the overrides in its .hydra/overrides.yaml instead"
        )
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        plugin_conf_dirs()  # every plug-in named in MRIRECON_PLUGINS can be found
    except PluginError as exc:
        return fail(str(exc))
    _register_sweeper()
    overrides, multirun = _overrides(rest)
    if "-h" in rest or "--help" in rest:
        from mrirecon.cli.helptext import subcommand_help

        return _print_or_fail(lambda: subcommand_help(subcommand, SUBCOMMANDS[subcommand], overrides))
    if multirun and subcommand == "study":
        return fail("-m: a study runs its stages itself, with the sweeps its stages declare (drop -m)")
    if multirun and _SINGLE_MODE_FLAGS.intersection(rest):
        flag = sorted(_SINGLE_MODE_FLAGS.intersection(rest))[0]
        return fail(f"{flag} cannot be combined with -m/--multirun (it shows one config: drop -m and the sweeps)")
    if not _HELP_FLAGS.intersection(rest):
        problem = check(subcommand, overrides, multirun)
        if problem:
            return fail(problem)
    rank_overrides = _torchrun_rank_overrides()
    if rank_overrides:
        rest = [a for a in rest if not a.startswith("hydra.run.dir=")] + rank_overrides
    return _run_hydra(subcommand, rest, multirun)


def _print_or_fail(make: Callable[[], str]) -> int:
    """Print what `make` returns, or its Problem as one `error:` line."""
    try:
        text = make()
    except Problem as problem:
        return fail(str(problem))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
