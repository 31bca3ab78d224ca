"""A study's stages read from its config: references by name, the order they run in, knobs as
override text, and the configs refused before anything runs (unknown stages, cycles, misplaced keys)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import mrirecon.studies.references as references
from mrirecon.errors import UserError
from mrirecon.studies import plan


def study(stages: dict, **knobs) -> OmegaConf:
    return OmegaConf.create({"study": {**knobs, "stages": stages}})


def names(cfg) -> list[str]:
    return [s.name for s in plan.stages(cfg)]


def test_stages_run_after_the_stages_they_reference_else_in_declared_order():
    cfg = study(
        {
            "evaluate": {"run": "evaluate", "overrides": ["runs=[${stage:recon},${stage:base}]"]},
            "base": {"run": "reconstruct", "overrides": ["data.path=${stage:data}"]},
            "recon": {"run": "reconstruct", "each": "train"},
            "train": {"run": "train", "overrides": ["data.path=${stage:data}"]},
            "data": {"run": "preprocess"},
        }
    )
    stages = {s.name: s for s in plan.stages(cfg)}
    assert names(cfg) == ["data", "base", "train", "recon", "evaluate"]
    assert stages["evaluate"].needs == ("recon", "base") and stages["recon"].needs == ("train",)


def test_references_resolve_through_the_context_in_force():
    cfg = study(
        {"a": {"run": "preprocess"}, "b": {"run": "train", "overrides": ["data.path=${stage:a}", "x=${stage:a,dir}"]}}
    )

    class Context:
        def stage(self, name, what):
            return f"/out/{name}/{what}"

        def best(self, name, key):
            return "0.5"

    assert plan.overrides(cfg, "b", Context()) == ["data.path=/out/a/output", "x=/out/a/dir"]
    assert plan.overrides(cfg, "b", references.Placeholders()) == ["data.path=@stage/a", "x=@stage/a/dir"]
    assert (
        OmegaConf.to_container(cfg.study.stages.b.overrides, resolve=True)[0] == "data.path=@stage/a"
    )  # --cfg job --resolve


def test_a_whole_knob_becomes_override_text_and_a_list_knob_is_spliced_in():
    cfg = study(
        {
            "t": {
                "run": "train",
                "overrides": ["${study.common}", "train.max_minutes=${study.minutes}", "a=${study.flag}"],
            }
        },
        minutes=None,
        flag=True,
        common=["train.epochs=${study.epochs}", "seed=${study.seeds}"],
        epochs=3,
        seeds="723,724",
    )
    got = plan.overrides(cfg, "t", references.Placeholders())
    assert got == ["train.epochs=3", "seed=723,724", "train.max_minutes=null", "a=true"]  # not None, True


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            {"a": {"run": "train", "overrides": ["checkpoint=${stage:nope}"]}},
            "study.stages.a.overrides: no stage named 'nope'",
        ),
        ({"a": {"run": "reconstruct", "each": "nope"}}, "study.stages.a.each: no stage named 'nope'"),
        (
            {
                "a": {"run": "train", "overrides": ["x=${stage:c}"]},
                "b": {"run": "reconstruct", "each": "a"},
                "c": {"run": "evaluate", "overrides": ["runs=${stage:b}"]},
            },
            "study.stages: a -> c -> b -> a: these stages read each other's outputs",
        ),
        ({"a": {"run": "train", "overrides": ["x=${stage:a}"]}}, "study.stages: a -> a:"),
        ({"a": {"run": "download"}}, "study.stages.a.run: 'download' is not a subcommand a study runs"),
        ({"a": {"run": "train", "sweep": ["x=1"]}}, "study.stages.a.sweep: unknown key"),
        ({"a": {"run": "train", "overrides": "x=1"}}, "study.stages.a.overrides: expected a list"),
        ({"a": {"run": "train", "each": "b"}, "b": {"run": "train"}}, "study.stages.a.each: only a reconstruct stage"),
        (
            {"a": {"run": "preprocess"}, "b": {"run": "reconstruct", "each": "a"}},
            "'a' is a preprocess stage, not a train stage",
        ),
        ({"a": {"run": "preprocess", "overrides": ["data.path=x.h5"]}}, "data.path is set by the study"),
        ({"a": {"run": "train", "overrides": ["hydra.run.dir=x"]}}, "hydra.run.dir is set by the study"),
        ({"a b": {"run": "train"}}, "study.stages.a b: a stage name is a word"),
        ({"a": {"run": "train", "overrides": ["x=${stage:a,best}"]}}, "expected ${stage:NAME} or ${stage:NAME,dir}"),
    ],
)
def test_what_cannot_run_is_refused_before_anything_runs(stages, message):
    with pytest.raises(UserError) as err:
        plan.stages(study(stages))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_no_stages_is_refused():
    with pytest.raises(UserError, match="study.stages: expected a mapping"):
        plan.stages(study({}))
