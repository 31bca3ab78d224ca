"""The skip rule, in process, with the child processes replaced by a fake that writes what each
subcommand writes (its run dirs, Hydra's .hydra files and its outputs): a fresh study runs every
stage, a rerun none, a changed knob only the stages it changes and those that read them; a
changed output, a failed stage and an interrupted training are run again; `${best:...}` takes the
best point's value. The end-to-end run of the real commands is tests/tasks/test_study.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from mrirecon.cli.configs import config_dir
from mrirecon.errors import UserError
from mrirecon.studies import identity, launch, plan, records, runner

GROUPS = ("data", "method", "model")


class FakeChild:
    """Stands for `mrirecon <run> -m ...`: records the calls; each point gets Hydra's files and
    the subcommand's outputs (a reconstruct's objective: `score(point overrides)`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: str | None = None  # a subcommand that fails (exit 2)
        self.score = lambda point: 30.0

    def __call__(self, argv: list[str]) -> int:
        run, rest = argv[3], argv[5:]
        sweep = Path(next(a for a in rest if a.startswith("hydra.sweep.dir=")).partition("=")[2])
        overrides = [a for a in rest if not a.startswith("hydra.")]
        self.calls.append((run, overrides))
        for i, point in enumerate(identity.points(overrides)):
            self.write_point(run, sweep / str(i), [o for o in point if o != "train.resume=true"], run != self.fail)
        return 2 if run == self.fail else 0

    def write_point(self, run: str, run_dir: Path, point: list[str], finished: bool = True) -> None:
        """Hydra's files and the outputs of one run (`finished` False: a training killed after
        its first epoch, whose last.pt is all it wrote)."""
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        choices = {k: v for k, _, v in (o.partition("=") for o in point) if k in GROUPS}
        cfg = OmegaConf.create({"data": {"name": choices.get("data", "4bit_full")}})
        for key, _, value in (o.partition("=") for o in point if o.partition("=")[0] not in GROUPS):
            value = value.replace("$\\{", "${").replace(
                "\\}", "}"
            )  # the sweeper's escapes, which Hydra's parser undoes
            OmegaConf.update(cfg, key, value, force_add=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
        OmegaConf.save(
            {"hydra": {"job": {"name": run}, "runtime": {"choices": choices}}}, run_dir / ".hydra" / "hydra.yaml"
        )
        names = records.OUTPUTS[run] if finished else ("checkpoints/last.pt",) if run == "train" else ()
        for name in names:
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / name).write_text(name)
        if run == "preprocess" and finished:
            Path(str(OmegaConf.select(cfg, "data.path"))).write_text("processed")
        if run == "reconstruct" and finished:
            summary = {"objective": {"metric": "psnr", "value": self.score(point)}}
            (run_dir / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def child(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    fake = FakeChild()
    monkeypatch.setattr(launch, "execute", fake)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield fake


QUICK = {
    "data": {"run": "preprocess", "overrides": ["data=4bit_quarter"]},
    "baselines": {
        "run": "reconstruct",
        "overrides": ["method=zero_filled,cg_sense", "data=4bit_quarter", "data.path=${stage:data}"],
    },
    "train": {
        "run": "train",
        "overrides": [
            "method=dbp",
            "model=resnet",
            "data=4bit_quarter",
            "data.path=${stage:data}",
            "train.epochs=${study.epochs}",
        ],
    },
    "dbp": {"run": "reconstruct", "each": "train"},
    "evaluate": {"run": "evaluate", "overrides": ["runs=[${stage:baselines},${stage:dbp}]", "baseline=cg_sense"]},
}


def run_study(stages: dict, forwarded: list[str] | None = None, **knobs) -> list[records.Done]:
    cfg = OmegaConf.create({"study": {**knobs, "stages": stages}})
    setting = runner.Setting(cfg, Path("outputs/study/test"), forwarded or [])
    return runner.run_all(setting, plan.stages(cfg), lambda done, pending: None)


def ran(done: list[records.Done]) -> list[str]:
    return [d.name for d in done if not d.skipped]


def test_a_rerun_skips_every_stage_and_a_changed_knob_reruns_what_it_changes(child):
    first = run_study(QUICK, epochs=3)
    assert ran(first) == ["data", "baselines", "train", "dbp", "evaluate"]
    assert len(child.calls) == 5
    by_name = {d.name: d for d in first}
    dbp_call = child.calls[3][1]  # the reconstruct that follows the train point: its data, method, checkpoint
    assert "method=dbp" in dbp_call and "data=4bit_quarter" in dbp_call
    assert f"checkpoint={by_name['train'].dir}/0/checkpoints/best.pt" in dbp_call
    assert f"data.path={by_name['data'].dir}/4bit_quarter.h5" in dbp_call
    assert f"runs=[{by_name['baselines'].dir},{by_name['dbp'].dir}]" in child.calls[4][1]

    assert ran(run_study(QUICK, epochs=3, forwarded=["hardware.threads=1"])) == []  # how fast is not what
    assert len(child.calls) == 5

    third = run_study(QUICK, epochs=2)
    assert ran(third) == ["train", "dbp", "evaluate"]
    assert {d.name: d.dir for d in third}["baselines"] == by_name["baselines"].dir
    assert {d.name: d.dir for d in third}["train"] != by_name["train"].dir  # the earlier run stays whole
    assert (by_name["train"].dir / "0" / "checkpoints" / "best.pt").is_file()
    assert ran(run_study(QUICK, epochs=3)) == []  # both versions are kept: going back runs nothing


def test_a_forwarded_seed_reruns_everything_it_reaches(child):
    run_study(QUICK, epochs=3)
    assert ran(run_study(QUICK, epochs=3, forwarded=["seed=724"])) == ["data", "baselines", "train", "dbp", "evaluate"]
    assert all("seed=724" in call for _, call in child.calls[5:])


def test_a_changed_or_missing_output_reruns_its_stage_and_those_that_read_it(child):
    first = {d.name: d for d in run_study(QUICK, epochs=3)}
    (first["train"].dir / "0" / "checkpoints" / "best.pt").write_text("another network")
    assert ran(run_study(QUICK, epochs=3)) == ["train", "dbp", "evaluate"]
    (first["baselines"].dir / "1" / "recon.h5").unlink()
    assert ran(run_study(QUICK, epochs=3)) == ["baselines", "evaluate"]


def test_a_failed_stage_stops_the_study_and_runs_again_next_time(child):
    child.fail = "train"
    with pytest.raises(runner.StageFailed, match=r"study.stages.train: `mrirecon train -m .*` failed \(exit code 2\)"):
        run_study(QUICK, epochs=3)
    assert [c[0] for c in child.calls] == ["preprocess", "reconstruct", "train"]
    child.fail = None
    assert ran(run_study(QUICK, epochs=3)) == ["train", "dbp", "evaluate"]


def test_an_interrupted_training_resumes_and_an_interrupted_train_sweep_starts_a_new_attempt(child):
    sweep = {**QUICK, "train": {**QUICK["train"], "overrides": [*QUICK["train"]["overrides"][1:], "model=resnet,unet"]}}
    for stages, resumed in ((QUICK, True), (sweep, False)):
        child.fail = "train"  # killed after its first epoch: last.pt is all a point wrote
        with pytest.raises(runner.StageFailed):
            run_study(stages, epochs=3)
        child.fail = None
        done = {d.name: d for d in run_study(stages, epochs=3)}
        train_call = next(c for r, c in reversed(child.calls) if r == "train")
        assert ("train.resume=true" in train_call) == resumed  # one run goes on from its last.pt
        assert done["train"].dir.name.endswith("-2") != resumed  # a sweep starts over beside it


def test_best_takes_the_value_at_the_best_point_of_a_sweep(child):
    child.score = lambda point: (
        -abs(float(next(o for o in point if o.startswith("method.lam=")).partition("=")[2]) - 0.3)
    )
    stages = {
        "data": QUICK["data"],
        "sweep": {
            "run": "reconstruct",
            "overrides": ["method=cs_wavelet", "data.path=${stage:data}", "method.lam=0.1,0.3,1", "data.split=val"],
        },
        "chosen": {
            "run": "reconstruct",
            "overrides": ["method=cs_wavelet", "data.path=${stage:data}", "method.lam=${best:sweep,method.lam}"],
        },
    }
    run_study(stages)
    assert "method.lam=0.3" in child.calls[-1][1]
    child.score = lambda point: -abs(float(next(o for o in point if o.startswith("method.lam=")).partition("=")[2]) - 1)
    stages["sweep"]["overrides"][-1] = "data.split=all"  # the sweep runs again, chooses another value
    assert ran(run_study(stages)) == ["sweep", "chosen"] and "method.lam=1" in child.calls[-1][1]


def test_a_train_sweep_is_read_through_each_not_as_one_checkpoint(child):
    stages = {
        "data": QUICK["data"],
        "train": {"run": "train", "overrides": ["method=dbp,modl", "data.path=${stage:data}"]},
        "recon": {"run": "reconstruct", "overrides": ["checkpoint=${stage:train}"]},
    }
    with pytest.raises(
        UserError, match=r"\$\{stage:train\}: train trained 2 networks \(a sweep\): follow its points with each: train"
    ):
        run_study(stages)
    stages["recon"] = {"run": "reconstruct", "each": "train", "overrides": ["figures=0"]}
    done = {d.name: d for d in run_study(stages)}
    assert [p.dir for p in done["recon"].points] == ["0/0", "1/0"]
    second = [c for r, c in child.calls if r == "reconstruct"][1]
    assert second[0] == "method=modl" and f"checkpoint={done['train'].dir}/1/checkpoints/best.pt" in second
