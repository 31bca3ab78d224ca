"""The experiment runner's command line: bad overrides, sweeps that survive a bad point, help,
version, and OS errors around Hydra's own writes.

Most cases run `mrirecon.cli.app` in this process (no interpreter start, no torch import per
case); the contract is that of test_errors.py: exactly one `error:` line on stderr naming the
key, exit code 2, no run dir left behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import files_under, refused, run_main

import mrirecon.cli.app as cli
from mrirecon import __version__
from mrirecon.cli import sweeps
from mrirecon.errors import UserError

THREADS = "hardware.threads=1"


# ---------------------------------------------------------------------------- bad overrides

BAD_OVERRIDES = {
    # Hydra's hints kept: a sweep without -m
    "sweep_without_m": (("reconstruct", "method=zero_filled,cg_sense"), ("method=zero_filled,cg_sense", "--multirun")),
    "choice_without_m": (("reconstruct", "method=choice(zero_filled,cg_sense)"), ("requires --multirun",)),
    # unknown keys list the keys that exist
    "key_of_another_method": (("reconstruct", "method=zero_filled", "method.lam=1"), ("method.lam", "zero_filled")),
    "misspelt_key": (
        ("reconstruct", "method=cg_sense", "method.lamb=1"),
        ("method.lamb: unknown key", "method cg_sense has: lam, max_iter, tol, search_steps"),
    ),
    "misspelt_model_key": (("train", "model=resnet", "model.chanels=3"), ("model.chanels", "channels, num_blocks")),
    "unknown_top_key": (("evaluate", "figure_slice=3"), ("figure_slice", "figure_slices")),
    "key_under_null": (("train", "train.step_lr.step_size=3"), ("train.step_lr.step_size", "train.step_lr is null")),
    "key_only_in_one_swept_method": (
        ("reconstruct", "-m", "method=cg_sense,zero_filled", "method.max_iter=3"),
        ("method.max_iter", "zero_filled"),
    ),
    # values of the wrong type (were tracebacks, or silently taken as true)
    "threads_text": (("reconstruct", "hardware.threads=abc"), ("hardware.threads", "'abc'", "integer >= 1")),
    "threads_zero": (("reconstruct", "hardware.threads=0"), ("hardware.threads", "0", ">= 1")),
    "seed_text": (("reconstruct", "seed=abc"), ("seed", "'abc'", "integer")),
    "seed_float": (("preprocess", "seed=1.5"), ("seed", "1.5", "integer")),
    "model_channels_text": (("train", "model=resnet", "model.channels=abc"), ("model.channels", "'abc'", "integer")),
    "figures_negative": (("reconstruct", "figures=-1"), ("figures", "-1", ">= 0")),
    "flag_text": (("reconstruct", "output.cfl=abc"), ("output.cfl", "'abc'", "true or false")),
    "number_text": (("preprocess", "data.val_fraction=abc"), ("data.val_fraction", "'abc'", "a number")),
    "bad_value_in_a_sweep": (("reconstruct", "-m", "method.max_iter=3,abc"), ("method.max_iter", "'abc'")),
    # groups
    "unknown_option_in_choice": (("reconstruct", "-m", "method=choice(zero_filled,foo)"), ("method=foo", "cg_sense")),
    "glob_matching_nothing": (("reconstruct", "-m", "method=glob(nothing*)"), ("method=glob(nothing*)", "matches no")),
    "list_of_options": (("reconstruct", "-m", "method=[zero_filled,cg_sense]"), ("choose one option",)),
    "unknown_launcher": (("reconstruct", "hydra/launcher=nope"), ("hydra/launcher/nope", "joblib, slurm")),
    # modes
    "cfg_with_multirun": (("reconstruct", "-m", "--cfg", "job", "method=zero_filled,cg_sense"), ("--cfg", "-m")),
    "syntax": (("reconstruct", "method.lam=[1,2"), ("invalid override", "[1,2")),
    "unknown_subcommand": (("--versio",), ("'--versio'", "preprocess")),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_bad_override_is_one_line(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """Refused before Hydra runs: one line naming the key, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    args, names = BAD_OVERRIDES[case]
    code, _, err = run_main(capsys, *args, THREADS, f"hydra.run.dir={tmp_path / 'run'}")
    refused(code, err, *names)
    assert not files_under(tmp_path)


@pytest.mark.parametrize(
    "overrides",
    [
        ["method=choice(zero_filled,cg_sense)"],
        ["method=glob(cs_*)", "method.max_iter=range(10,40,10)"],
        ["method=cg_sense", "method.lam=tag(log, interval(1e-4, 1e-1))"],  # the optuna sweeper's syntax
        ["method=cg_sense", "method.max_iter=tag(int, interval(5, 50))"],
        ["data=glob(*quarter)", "seed=723,724"],
    ],
    ids=["choice", "glob_range", "log_interval", "int_interval", "glob_data"],
)
def test_hydra_sweep_syntax_passes_the_pre_check(overrides: list[str]) -> None:
    from mrirecon.cli.overrides import check

    assert check("reconstruct", overrides, multirun=True) is None


TASK_REFUSALS = {
    # checked where the value is used (the key's default is null, or the check needs the task)
    "step_lr_number": (("train", "train.step_lr=5"), ("train.step_lr", "5", "step_size", "gamma")),
    "step_lr_gamma": (("train", "train.step_lr={step_size:2,gamma:-1}"), ("train.step_lr.gamma", "-1")),
    "compression": (("preprocess", "data.compression=abc"), ("data.compression", "'abc'", "gzip")),
    "missing_source": (("preprocess", "data.source=/missing.h5"), ("data.source", "/missing.h5", "not found")),
}


@pytest.mark.parametrize("case", list(TASK_REFUSALS))
def test_task_refusal_is_one_line(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """Refused by the task: one line, exit 2, and the run dir Hydra made is removed again."""
    monkeypatch.chdir(tmp_path)
    args, names = TASK_REFUSALS[case]
    code, _, err = run_main(capsys, *args, THREADS, f"hydra.run.dir={tmp_path / 'run'}")
    refused(code, err, *names)
    assert not (tmp_path / "run").exists()


def test_type_errors_inside_the_code_are_not_user_errors(monkeypatch) -> None:
    """A TypeError raised inside a constructor is a bug: it propagates, while a bad config value
    is a ValueError naming the key (errors.configured turns only those into UserError)."""
    from mrirecon.errors import configured
    from mrirecon.nets import build_net
    from mrirecon.nets.resnet import ResNet

    with pytest.raises(UserError, match=r"^model\.channels: 'abc' must be an integer$"):
        configured("model", build_net, {"name": "resnet", "channels": "abc"})

    @functools.wraps(ResNet.__init__)  # the same signature, a bug inside
    def broken(self, *args, **kwargs):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(ResNet, "__init__", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        configured("model", build_net, {"name": "resnet", "channels": 4})


def test_argument_check_follows_kwargs_to_the_base_class() -> None:
    from mrirecon.arguments import check_arguments
    from mrirecon.methods import REGISTRY

    check_arguments(REGISTRY["dbp"], {"num_admm": 2, "num_unrolls": 3}, "method dbp", ("denoiser",))
    with pytest.raises(ValueError, match=r"^num_unrolls: 2\.5 must be an integer$"):
        check_arguments(REGISTRY["dbp"], {"num_unrolls": 2.5}, "method dbp", ("denoiser",))
    with pytest.raises(ValueError, match=r"^denoiser: missing"):
        check_arguments(REGISTRY["dbp"], {}, "method dbp")
    with pytest.raises(
        ValueError, match=r"^lamb: unknown key \(method cg_sense has: lam, max_iter, tol, search_steps, fallback\)"
    ):
        check_arguments(REGISTRY["cg_sense"], {"lamb": 1}, "method cg_sense")


@pytest.mark.parametrize("flag", ["--experimental-rerun", "--experimental-rerun=", "--exp=", "--experimental-r"])
def test_experimental_rerun_is_refused_before_hydra_unpickles_the_file(
    flag: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Hydra's --experimental-rerun FILE (or an abbreviation argparse accepts) unpickles FILE:
    a pickle runs code when loaded. Refused in one line; the pickle's code never runs."""

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(tmp_path / "payload-ran"), "w"))

    evil = tmp_path / "config.pickle"
    evil.write_bytes(pickle.dumps(Payload()))
    monkeypatch.chdir(tmp_path)
    args = [f"{flag}{evil}"] if flag.endswith("=") else [flag, str(evil)]
    code, _, err = run_main(capsys, "reconstruct", *args, THREADS)
    refused(code, err, "--experimental-rerun", "unpickle")
    assert not (tmp_path / "payload-ran").exists() and not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------- help and version


def test_usage_names_what_preprocess_reads(capsys) -> None:
    code, out, _ = run_main(capsys)
    line = next(s for s in out.splitlines() if s.strip().startswith("preprocess"))
    assert code == 0 and all(f in line for f in ("sample", "DeepInPy", "fastMRI", "ISMRMRD", "BART", ".npy"))


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, capsys) -> None:
    code, out, err = run_main(capsys, flag)
    assert code == 0 and out.strip() == f"mrirecon {__version__}" and not err


def test_study_help_offers_no_multirun(capsys, tmp_path: Path, monkeypatch) -> None:
    """A study refuses -m (its stages declare their sweeps), so its usage line does not offer it."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(capsys, "study", "--help")
    assert code == 0 and out.startswith("usage: mrirecon study [key=value ...] [hydra flags]\n")
    assert run_main(capsys, "train", "--help")[1].startswith("usage: mrirecon train [key=value ...] [-m] [hydra flags]")


def test_subcommand_help_shows_its_groups_and_key_descriptions(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(capsys, "reconstruct", "--help")
    assert code == 0
    groups = out.split("Config groups")[1].split("Keys (")[0]
    assert "method=<option>" in groups and "cg_sense" in groups and "data=<option>" in groups
    assert "flow_prior" not in groups and "model=<option>" not in groups  # reconstruct takes neither
    # a key's description comes from the comment after it in conf/method/cg_sense.yaml
    assert "method.lam=auto\n      auto: discrepancy principle per slice" in out
    # and from the comment lines above it in conf/base.yaml
    assert "data.path=outputs/data/4bit_full.h5\n      the processed file (made by `mrirecon preprocess" in out

    code, out, _ = run_main(capsys, "evaluate", "--help")
    assert code == 0
    assert "hardware=<option>" in out and "method=<option>" not in out and "data=<option>" not in out
    assert "data.source" not in out and "figure_slices=2\n      Slices shown per data file and variant" in out

    code, out, _ = run_main(capsys, "train", "--help")
    train_methods = out.split("method=<option>")[1].split("model=<option>")[0]
    assert "dbp" in train_methods and "unet_image" in train_methods and "cg_sense" not in train_methods
    assert "flow_l1" not in train_methods  # model=flow trains the flow prior, with no method

    code, out, _ = run_main(capsys, "reconstruct", "method=cs_wavelet", "--help")
    assert "method.solver=fista\n      fista | pogm" in out  # the chosen option's keys
    assert not files_under(tmp_path)


def test_comments_parser_reads_trailing_continued_and_block_comments(tmp_path: Path) -> None:
    from mrirecon.cli.helptext import comments

    path = tmp_path / "x.yaml"
    path.write_text(
        "# Header line one.\n# line two\nname: x\n# above a\n# and more\na: 1\n"
        "b: 2   # after b\n     # continues b\nsection:\n  # about c\n  c: 3  # after c\n"
    )
    found = comments(path, "g")
    assert found.header == "Header line one. line two"
    assert found.keys == {"g.a": "above a and more", "g.b": "after b continues b", "g.section.c": "about c after c"}


# ---------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test file preprocessed as variant `full`."""
    from helpers import tiny_arrays, write_h5

    cwd = tmp_path_factory.mktemp("runner")
    tiny = write_h5(cwd / "tiny.h5", tiny_arrays())
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = cli.main(
            ["preprocess", "data=full", f"data.source={tiny}", "data.path=p.h5", THREADS, "hydra.run.dir=pre"]
        )
    finally:
        os.chdir(old)
    assert code == 0
    return cwd / "p.h5"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_survives_a_bad_point(launcher: str, processed: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Four points, two with an unknown split: the other two run; each failed point has its
    error.txt; the sweep ends with a summary of both and exit 2 (Hydra's choice() syntax)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys,
        "reconstruct",
        "-m",
        f"hydra/launcher={launcher}",
        *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []),
        "data=full",
        f"data.path={processed}",
        "method=choice(zero_filled,cg_sense)",
        "data.split=test,bogus",
        "figures=0",
        THREADS,
        "hydra.sweep.dir=sweep",
    )
    assert code == 2, err
    summary = err.strip().splitlines()
    assert summary[0].startswith("error: 2 sweep point(s)") and len(summary) == 3, err
    runs = {}
    for point in (tmp_path / "sweep").iterdir():
        if point.is_dir():
            overrides = (point / ".hydra" / "overrides.yaml").read_text()
            runs[("cg_sense" if "cg_sense" in overrides else "zero_filled", "bogus" in overrides)] = point
    assert len(runs) == 4
    for (method, bad), point in runs.items():
        if bad:
            assert (point / "error.txt").read_text().startswith("error: data.split: unknown split 'bogus'")
            assert not (point / "metrics.csv").exists()
            assert any(f"[method={method} data.split=bogus]: data.split: unknown split" in s for s in summary[1:])
        else:
            assert json.loads((point / "summary.json").read_text())["method"] == method
            assert not (point / "error.txt").exists()


def test_a_failed_point_returns_none_and_a_good_one_its_value(tmp_path: Path, monkeypatch) -> None:
    """What a sweeper sees: the task's own return value, or None for a failed point (not a
    number: the Optuna sweeper counts it as a failed trial); the failure is in its error.txt."""
    from omegaconf import OmegaConf

    import mrirecon.tasks.evaluate as task

    cfg = OmegaConf.create({"hardware": {"threads": 1}})
    monkeypatch.setattr(task, "run", lambda cfg: 0.25)
    (tmp_path / "error.txt").write_text("my notes\n")  # the user's file of that name stays
    assert cli._run_task("evaluate", cfg, tmp_path, multirun=True) == 0.25
    assert (tmp_path / "error.txt").read_text() == "my notes\n"
    sweeps.record_failure(tmp_path, "error: from an earlier run")  # an earlier run's goes
    assert cli._run_task("evaluate", cfg, tmp_path, multirun=True) == 0.25
    assert not (tmp_path / "error.txt").exists()

    def refuse(cfg):
        raise UserError("runs: nothing there")

    monkeypatch.setattr(task, "run", refuse)
    assert cli._run_task("evaluate", cfg, tmp_path, multirun=True) is None
    assert (tmp_path / "error.txt").read_text() == "error: runs: nothing there\n"

    def bug(cfg):
        raise KeyError("oops")

    monkeypatch.setattr(task, "run", bug)
    assert cli._run_task("evaluate", cfg, tmp_path, multirun=True) is None
    text = (tmp_path / "error.txt").read_text()
    assert text.startswith(f"{sweeps.INTERNAL}: KeyError: 'oops'\nTraceback") and "raise KeyError" in text
    with pytest.raises(KeyError):  # a single run: a bug stays a traceback
        cli._run_task("evaluate", cfg, tmp_path, multirun=False)


# ---------------------------------------------------------------------------- OS errors around Hydra


def test_full_disk_while_hydra_saves_its_config(tmp_path: Path, capsys, monkeypatch) -> None:
    """ENOSPC from Hydra's .hydra/config.yaml write (simulated): one line naming the run dir key
    and the file, exit 2, and the half-made run dir removed."""
    import hydra.core.utils

    def no_space(cfg, filename: str, output_dir: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir / filename))

    monkeypatch.setattr(hydra.core.utils, "_save_config", no_space)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "evaluate", THREADS, f"hydra.run.dir={tmp_path / 'run'}")
    refused(code, err, "hydra.run.dir", "run/.hydra/config.yaml", "No space left on device")
    assert not (tmp_path / "run").exists()


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """`folder` made unwritable (chmod, or chattr +i where permissions are not enforced)."""
    folder.chmod(0o555)
    flagged = False
    try:
        probe = folder / "probe"
        with contextlib.suppress(PermissionError):
            probe.touch()
        if probe.exists():
            probe.unlink()
            flagged = bool(shutil.which("chattr")) and subprocess.run(["chattr", "+i", str(folder)]).returncode == 0
            if not flagged:
                pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if flagged:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_unwritable_hydra_folder_in_the_run_dir(tmp_path: Path, capsys, monkeypatch) -> None:
    """The run dir is writable (the pre-check passes) but its .hydra/ is not: Hydra's own write
    fails; one line, exit 2, and what was there is left as it was."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with immutable(run / ".hydra"):
        code, _, err = run_main(capsys, "evaluate", THREADS, f"hydra.run.dir={run}")
    refused(code, err, "hydra.run.dir", "cannot write", "run/.hydra/config.yaml")
    assert sorted(files_under(tmp_path)) == [] and (run / ".hydra").is_dir()


def test_sample_seed_follows_seed_unless_set() -> None:
    from mrirecon.cli.overrides import compose

    assert compose("preprocess", ["seed=5"]).data.sample.seed == 5
    assert compose("preprocess", ["seed=5", "data.sample.seed=9"]).data.sample.seed == 9
    assert compose("preprocess", []).data.sample.seed == 723  # the default sample is unchanged


@pytest.mark.slow
def test_optuna_sweep_counts_a_failed_point_as_a_failed_trial(processed: Path, tmp_path: Path, capsys, monkeypatch):
    """hydra/sweeper=optuna: trials with a negative lam fail (error.txt, the summary, exit 2);
    the study goes on and reports the best of the trials that ran."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import yaml

    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys,
        "reconstruct",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.n_trials=4",
        "method=cg_sense",
        "method.lam=interval(-1, 0.5)",  # with seed 0: -0.18, 0.07, -0.10, -0.18
        "method.max_iter=3",
        "data=full",
        f"data.path={processed}",
        "figures=0",
        THREADS,
        "hydra.sweep.dir=sweep",
    )
    failed = [p.parent for p in (tmp_path / "sweep").glob("*/error.txt")]
    ran = [p.parent for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert code == 2 and failed and ran and len(failed) + len(ran) == 4, err
    assert f"error: {len(failed)} sweep point(s)" in err and "method.lam" in err
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"]["method.lam"] >= 0
    assert best["best_value"] == pytest.approx(
        max(json.loads((p / "summary.json").read_text())["objective"]["value"] for p in ran)
    )
