"""evaluate's reading and tables, in process on run dirs made by hand: rows keyed by everything
that makes runs differ, pooling on request only, failed slices counted, damaged runs refused with a
reason, per-volume metrics the fastMRI way, parameter units kept apart, provenance records."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import fake_run, image_run, tiny_arrays, write_h5
from test_metrics import blob, fastmri_volume

from mrirecon.evaluation import budgets, metrics, report, results
from mrirecon.evaluation.runs import Damaged, discover, load
from mrirecon.io import provenance

PSNR = np.array([30.0, 31.0, 32.0, 33.0, 34.0, 35.0])


def table_of(paths: list[Path], level: str = "slice", pool: tuple[str, ...] = ()) -> list[dict]:
    runs = [load(p, level) for p in paths]
    table = results.summarize(runs, level, pool)
    results.label_rows(table, results.param_columns(runs))
    return table


def checkpoint(path: str, selected_on: str | None = None) -> dict:
    return {
        "checkpoint": path,
        "checkpoint_info": {"path": path, "id": path[-8:], "model_config_name": "flow", "selected_on": selected_on},
    }


def test_checkpoints_and_seeds_make_four_labelled_rows_and_pool_on_request(tmp_path):
    dirs = []
    for c, ckpt in enumerate(("/t/run1/checkpoints/best.pt", "/t/run2/checkpoints/best.pt")):
        for seed in (1, 2):
            extra = {**checkpoint(ckpt), "seed": seed}
            dirs.append(
                fake_run(tmp_path / f"r{c}{seed}", "flow_l1", "4bit_quarter", PSNR + c + seed, summary_extra=extra)
            )
    table = table_of(dirs)
    labels = sorted(r["label"] for r in table)
    assert len(table) == 4 and len(set(labels)) == 4
    assert labels[0] == "flow_l1 · checkpoint flow run1/checkpoints/best.pt · seed 1"
    pooled = table_of(dirs, pool=("seed",))
    assert len(pooled) == 2 and {r["seed"] for r in pooled} == {"1, 2"} and {r["runs"] for r in pooled} == {2}
    assert all("seeds 1, 2" in r["label"] for r in pooled)
    for row in pooled:  # results.csv names the run dir of every run a row pools
        assert sorted(row["run_dirs"].split("; ")) == sorted(
            str(d) for d in dirs if ("run2" in row["label"]) == (d.name[1] == "1")
        )
    assert "run_dirs" in report.result_columns([])
    mean = next(r for r in pooled if "run2" in r["label"])["psnr_mean"]
    assert mean == pytest.approx(np.mean(PSNR) + 1 + 1.5)  # per slice, the mean over the seeds


@pytest.mark.parametrize("field", ["mrirecon_version", "metric_convention", "data_id"])
def test_runs_that_differ_in_version_convention_or_content_are_not_pooled(tmp_path, field):
    a = fake_run(tmp_path / "a", "cg_sense", "full", PSNR, summary_extra={field: "one"})
    b = fake_run(tmp_path / "b", "cg_sense", "full", PSNR + 1, summary_extra={field: "two"})
    table = table_of([a, b])
    assert len(table) == 2 and len({r["label"] for r in table} | {r["data_label"] for r in table}) >= 2


def test_failed_slices_are_counted_not_averaged_away(tmp_path):
    psnr = PSNR.copy()
    psnr[2] = np.nan  # a diverging method on one slice
    a = fake_run(tmp_path / "a", "cs_tv", "full", psnr)
    b = fake_run(tmp_path / "b", "zero_filled", "full", PSNR)
    table = {r["method"]: r for r in table_of([a, b])}
    assert table["cs_tv"]["failed"] == 1 and np.isnan(table["cs_tv"]["psnr_mean"])
    assert table["cs_tv"]["best"] == "failed (1)" and table["zero_filled"]["failed"] == 0
    assert not results.comparisons(list(table.values()), None)  # nothing compared with a failed row


def test_subject_level_decision_in_the_table(tmp_path):
    subjects = [0, 0, 1, 1, 2, 2]
    a = fake_run(tmp_path / "a", "cg_sense", "full", PSNR + 1, subjects=subjects)
    b = fake_run(tmp_path / "b", "zero_filled", "full", PSNR, subjects=subjects)
    table = table_of([a, b])
    comps = results.comparisons(table, None)
    psnr = next(c["result"] for c in comps if c["metric"] == "psnr")
    assert (psnr.unit, psnr.units, psnr.decision) == ("subjects", 3, "too few subjects")
    assert [r["best"] for r in table] == ["too few subjects", "too few subjects"] and table[0]["subjects"] == 3


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncated", "last line is incomplete"),
        ("short_row", "line 4 has 4 of 8 fields"),
        ("empty", "metrics.csv is empty"),
        ("header_only", "no slice rows"),
        ("bad_json", "not valid JSON"),
        ("corrupt_h5", "recon.h5 is unreadable"),
        ("other_slices", "recon.h5 holds other slices"),
        ("count", "summary.json says 9"),
        ("bad_number", "psnr 'abc' is not a number"),
    ],
)
def test_damaged_runs_give_a_reason(tmp_path, damage, reason):
    run = fake_run(tmp_path / "r", "cg_sense", "full", PSNR)
    csv_text = (run / "metrics.csv").read_text()
    if damage == "truncated":
        (run / "metrics.csv").write_text(csv_text[:-9])
    elif damage == "short_row":
        lines = csv_text.splitlines()
        lines[3] = ",".join(lines[3].split(",")[:4])
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    elif damage == "empty":
        (run / "metrics.csv").write_text("")
    elif damage == "header_only":
        (run / "metrics.csv").write_text(csv_text.splitlines()[0] + "\n")
    elif damage == "bad_json":
        (run / "summary.json").write_text('{"method": "cg')
    elif damage == "corrupt_h5":
        (run / "recon.h5").write_bytes(b"not an hdf5 file" * 10)
    elif damage == "other_slices":
        with h5py.File(run / "recon.h5", "a") as h5:
            h5["slices"][0] = 99
    elif damage == "count":
        (run / "summary.json").write_text(
            (run / "summary.json").read_text().replace('"method"', '"num_slices": 9, "method"')
        )
    else:
        (run / "metrics.csv").write_text(csv_text.replace(",30,", ",abc,", 1))
    with pytest.raises(Damaged, match=reason):
        load(run, "slice")


def test_discover_lists_incomplete_runs(tmp_path):
    fake_run(tmp_path / "ok", "cg_sense", "full", PSNR)
    (fake_run(tmp_path / "unfinished", "cg_sense", "full", PSNR) / "summary.json").unlink()
    (fake_run(tmp_path / "no_table", "cg_sense", "full", PSNR) / "metrics.csv").unlink()
    recon, train, skipped = discover([str(tmp_path)])
    assert [p.name for p in recon] == ["ok"] and not train
    assert {s.path.name: s.reason.split(" (")[0] for s in skipped} == {
        "unfinished": "metrics.csv without summary.json",
        "no_table": "summary.json without metrics.csv",
    }


def test_volume_level_is_fastmri_per_volume(tmp_path):
    rng = np.random.default_rng(3)
    ref = np.stack([blob(peak=p) for p in (1.0, 2.0, 4.0, 1.5, 3.0)])
    subjects = [7, 7, 7, 9, 9]
    recon = np.abs(ref + rng.normal(0, 0.05, ref.shape))
    worse = np.abs(ref + rng.normal(0, 0.1, ref.shape))
    a = image_run(tmp_path / "a", "cg_sense", recon, ref, subjects)
    b = image_run(tmp_path / "b", "zero_filled", worse, ref, subjects)
    table = {r["method"]: r for r in table_of([a, b], level="volume")}
    row = table["cg_sense"]
    volumes = [fastmri_volume(ref[:3], recon[:3]), fastmri_volume(ref[3:], recon[3:])]
    for name in ("nrmse", "psnr", "ssim"):
        assert row[f"{name}_mean"] == pytest.approx(np.mean([v[name] for v in volumes]), rel=1e-5)
    assert (row["level"], row["slices"], row["subjects"], row["unit"]) == ("volume", 5, 2, "subjects")
    slice_level = {r["method"]: r for r in table_of([a, b])}["cg_sense"]
    assert abs(slice_level["psnr_mean"] - row["psnr_mean"]) > 0.5  # per slice is another number


def test_a_volume_is_a_file_and_the_patient_stays_the_unit(tmp_path):
    """Two files of one patient are two volumes (fastMRI's per-file metrics) of one subject."""
    rng = np.random.default_rng(5)
    ref = np.stack([blob(peak=p) for p in (1.0, 2.0, 4.0, 1.5)])
    recon = np.abs(ref + rng.normal(0, 0.05, ref.shape))
    run = load(image_run(tmp_path / "a", "cg_sense", recon, ref, [3, 3, 3, 3], volumes=[0, 0, 1, 1]), "volume")
    assert run.items.tolist() == [0, 1] and run.units.tolist() == [3, 3]
    expected = [fastmri_volume(ref[:2], recon[:2]), fastmri_volume(ref[2:], recon[2:])]
    assert run.values["psnr"] == pytest.approx([v["psnr"] for v in expected], rel=1e-6)
    row = results.summarize([run], "volume")[0]
    assert (row["subjects"], row["unit"]) == (1, "subjects")


def test_reference_auto_is_fastmris_rss_where_the_run_has_it(tmp_path):
    """reference=auto measures against recon.h5's rss (fastMRI's reconstruction_rss) where it is
    there, at both levels; sense keeps metrics.csv's numbers; rss without it is refused."""
    rng = np.random.default_rng(6)
    sense = np.stack([blob(peak=p) for p in (1.0, 2.0, 3.0)])
    sense[:, :3] = 0  # the SENSE reference is zero outside the maps' support
    rss = np.abs(np.stack([blob(peak=p) for p in (1.0, 2.0, 3.0)]) + 0.02)
    recon = np.abs(rss + rng.normal(0, 0.05, rss.shape))
    path = image_run(tmp_path / "a", "cg_sense", recon, sense, [0, 0, 0], rss=rss)
    volume = load(path, "volume")
    assert volume.reference == "rss" and volume.identity["reference_image"] == "rss"
    assert volume.values["ssim"][0] == pytest.approx(fastmri_volume(rss, recon)["ssim"], rel=1e-6)
    by_slice = load(path, "slice")
    assert by_slice.values["psnr"] == pytest.approx([metrics.psnr(recon[k], rss[k]) for k in range(3)], rel=1e-6)
    as_recorded = load(path, "slice", reference="sense")
    assert as_recorded.values["psnr"] == pytest.approx([metrics.psnr(recon[k], sense[k]) for k in range(3)], rel=1e-5)
    cropped = load(path, "volume", crop="fastmri")  # 24 x 20: the centred 20 x 20 square
    assert cropped.reference == "rss, fastMRI crop"
    expected = fastmri_volume(rss[:, 2:22], recon[:, 2:22])
    assert cropped.values["psnr"][0] == pytest.approx(expected["psnr"], rel=1e-6)
    plain = image_run(tmp_path / "b", "cg_sense", recon, sense, [0, 0, 0])
    assert load(plain, "volume").reference == "sense"
    with pytest.raises(Damaged, match="reference=rss: recon.h5 holds no rss"):
        load(plain, "volume", reference="rss")
    table = results.summarize([volume, load(plain, "volume")], "volume")
    assert len({results.group_of(r) for r in table}) == 2  # never compared across references
    results.label_rows(table, [])
    headings = sorted(heading.rsplit(" · ", 1)[1] for heading, _ in report.groups(table))
    assert headings == ["reference rss", "reference sense"]  # the tables name it


def test_volume_level_refuses_what_it_cannot_do(tmp_path):
    ref = np.stack([blob()] * 2)
    without = image_run(tmp_path / "nosub", "cg_sense", ref * 0.9, ref)
    with pytest.raises(Damaged, match="records no subjects"):
        load(without, "volume")
    other = image_run(tmp_path / "other", "cg_sense", ref * 0.9, ref, [0, 0])
    with h5py.File(other / "recon.h5", "a") as h5:
        h5["recon"][0] = (ref[0] * 0.5).astype(
            np.complex64
        )  # recon.h5 no longer holds the images metrics.csv was computed on
    with pytest.raises(Damaged, match="not the images the metrics were computed on"):
        load(other, "volume")


def test_parameter_units_are_kept_apart_and_sweeps_order_numbers(tmp_path):
    dirs = [
        fake_run(tmp_path / f"cg{k}", "cg_sense", "full", PSNR + k, {"lam": lam})
        for k, lam in enumerate((1.0, 0.01, "auto", 0.1))
    ]
    dirs += [
        fake_run(tmp_path / f"cs{k}", "cs_wavelet", "full", PSNR + k, {"lam": lam})
        for k, lam in enumerate((1e-3, 1e-2))
    ]
    runs = [load(p, "slice") for p in dirs]
    columns = results.param_columns(runs)
    assert [c.title for c in columns] == ["lam [A^H A]", "lam [x max|A^H y|]"]
    table = results.summarize(runs)
    results.label_rows(table, columns)
    lines, _ = results.sweeps(table, columns)
    cg = next(s for s in lines if s.column.unit == "A^H A")
    assert [results.cell(r, cg.column) for r in cg.numeric] == [0.01, 0.1, 1.0]
    assert [results.cell(r, cg.column) for r, _ in cg.other] == ["auto"]
    assert all(results.cell(r, columns[1]) == "" for r in table if r["method"] == "cg_sense")


def test_selection_split_warning(tmp_path):
    val = fake_run(
        tmp_path / "v", "dbp", "full", PSNR, summary_extra={**checkpoint("/t/best.pt", "val"), "split": "val"}
    )
    test = fake_run(tmp_path / "t", "dbp", "full", PSNR, summary_extra=checkpoint("/t/best.pt", "val"))
    table = {r["split"]: r for r in table_of([val, test])}
    assert "the val split the checkpoint was selected on" in table["val"]["warning"] and table["test"]["warning"] == ""


def test_provenance_resolves_paths_and_tells_files_apart(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_h5(tmp_path / name / "q.h5", tiny_arrays(n=2, seed=len(name)), {"created": name})
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "one")
        relative = provenance.data_record("q.h5")
        os.chdir(tmp_path / "two")
        elsewhere = provenance.data_record("q.h5")
    finally:
        os.chdir(cwd)
    assert relative == provenance.data_record(tmp_path / "one" / "q.h5")  # q.h5 and the absolute path: one file
    assert relative["data_path"] != elsewhere["data_path"] and relative["data_id"] != elsewhere["data_id"]
    copy = tmp_path / "copy.h5"
    copy.write_bytes((tmp_path / "one" / "q.h5").read_bytes())
    assert provenance.content_id(copy) == relative["data_id"]  # a copy has the same content id


def test_checkpoint_record_tells_flow_and_flow_student_apart(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"x")
    state = {"epoch": 3, "step": 30, "best": 0.5, "history": [{"val_bpd": 0.5}]}
    flow = {"config": {"model": {"name": "flow", "levels": 3}}, "state": state, "model_config_name": "flow"}
    student = {"config": {"model": {"name": "flow", "levels": 4}}, "state": state, "model_config_name": "flow_student"}
    a, b = (provenance.checkpoint_record(path, c, "val_bpd") for c in (flow, student))
    assert (a["model_config_name"], b["model_config_name"]) == ("flow", "flow_student") and a["id"] != b["id"]
    assert a["selected_on"] == "val"
    last = tmp_path / "last.pt"
    last.write_bytes(b"x")
    later = {**flow, "state": {**state, "history": [{"val_bpd": 0.5}, {"val_bpd": 0.7}]}}
    assert provenance.checkpoint_record(last, later, "val_bpd")["selected_on"] is None  # not the best epoch
    assert provenance.selection_warning(a, "test") is None and "val" in provenance.selection_warning(a, "all")


def test_a_plugin_method_declares_its_units_in_its_runs(tmp_path):
    """Units come from each run's summary.json (Method.units), so a new method needs no edit in
    evaluate: two methods sweeping a 'step' of different units get two columns."""
    dirs = [
        fake_run(
            tmp_path / f"a{k}",
            "landweber",
            "full",
            PSNR + k,
            {"step": s},
            summary_extra={"param_units": {"step": "1/L"}},
        )
        for k, s in enumerate((0.5, 1.0))
    ]
    dirs += [
        fake_run(tmp_path / f"b{k}", "other", "full", PSNR + k, {"step": s}, summary_extra={"param_units": {}})
        for k, s in enumerate((0.1, 0.2))
    ]
    columns = results.param_columns([load(p, "slice") for p in dirs])
    assert sorted(c.title for c in columns) == ["step [1/L]", "step [other]"]


def test_the_best_column_corrects_for_comparing_with_the_observed_best(tmp_path):
    """Three rows on 8 slices: c alone is resolved from the best row (p 0.028), but the best row
    was picked from the data, so Holm runs over the 3 pairs: b stays resolved worse (p 2/2^8 x 3),
    c becomes tied. Ten rows on 8 slices: Holm over 45 pairs asks for p < 0.05/37, below the
    smallest p 8 units allow (2/2^8), and the table says so."""
    base = 30 + np.arange(8) * 0.37
    worse = np.array([0.3, 0.4, 0.1, 0.5, -0.1, 0.6, 0.2, 0.45])
    dirs = [
        fake_run(tmp_path / m, m, "full", psnr) for m, psnr in (("a", base + 1), ("b", base), ("c", base + 1 - worse))
    ]
    dirs += [fake_run(tmp_path / f"half_{m}", m, "half", psnr) for m, psnr in (("a", base + 1), ("b", base))]
    rows = table_of(dirs)
    table = {r["method"]: r for r in rows if r["variant"] == "full"}
    comps = {
        c["method"]: c for c in results.comparisons(rows, None) if c["metric"] == "psnr" and c["variant"] == "full"
    }
    assert [r["best"] for r in rows if r["variant"] == "half"] == ["*", ""]  # each group on its own
    assert comps["c"]["result"].resolved and comps["c"]["p_holm"] == pytest.approx(2 * comps["c"]["result"].p)
    assert comps["b"]["p_holm"] == pytest.approx(3 * 2 / 2**8)
    assert [table[m]["best"] for m in "abc"] == ["tied", "", "tied"]
    ten = [fake_run(tmp_path / f"m{k}", f"m{k}", "full", base + (2 if k == 0 else 0.01 * k)) for k in range(10)]
    ranked = table_of(ten)
    results.comparisons(ranked, None)
    assert {r["best"] for r in ranked} == {"too few slices"}


def test_a_sweep_on_the_test_split_is_warned(tmp_path):
    def sweep(split: str, lams: tuple[float, ...]) -> list[dict]:
        dirs = [
            fake_run(
                tmp_path / f"{split}{len(lams)}_{k}",
                "cg_sense",
                "full",
                PSNR + k,
                {"lam": lam},
                summary_extra={"split": split},
            )
            for k, lam in enumerate(lams)
        ]
        return table_of(dirs)

    swept = sweep("test", (0.01, 0.1, 1.0))
    assert all("3 settings of method.lam evaluated on data.split=test" in r["warning"] for r in swept)
    assert all(r["warning"] == "" for r in sweep("val", (0.01, 0.1)) + sweep("test", (0.01,)))


def test_row_means_weight_subjects_equally_and_intervals_stay_in_range(tmp_path):
    unbalanced = fake_run(tmp_path / "u", "cg_sense", "full", PSNR, subjects=[0, 0, 0, 0, 1, 1])
    (row,) = table_of([unbalanced])
    assert row["psnr_mean"] == pytest.approx((31.5 + 34.5) / 2)  # subject means 31.5 and 34.5, not 32.5
    psnr = np.array([40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0, 47.0, 12.0])  # SSIM near 1 and one far below
    (row,) = table_of([fake_run(tmp_path / "s", "cg_sense", "full", psnr)])
    ssim = 1 - 10 ** (-psnr / 10)
    assert results.stats.mean_test(ssim)[2] > 1 and row["ssim_high"] == 1.0 and row["ssim_low"] < row["ssim_mean"]


def with_std(path: Path, spearman: list[float], coverage: list[float]) -> Path:
    """Add a sampling method's std measures to a run dir made by image_run: metrics.csv's columns
    and recon.h5's std."""
    lines = (path / "metrics.csv").read_text().splitlines()
    lines = [lines[0] + ",std_spearman,std_coverage"] + [
        f"{line},{s:g},{c:g}" for line, s, c in zip(lines[1:], spearman, coverage)
    ]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    with h5py.File(path / "recon.h5", "a") as h5:
        h5["std"] = np.abs(h5["recon"][()] - h5["imgs"][()]).astype(np.float32)
    return path


def test_a_sampling_row_gets_its_uncertainty_means_over_units_and_other_rows_none(tmp_path):
    """Rows of a method with a std get std_spearman / std_coverage means over the subjects (at
    level volume: of each volume's slice mean) and results.csv their columns, empty for the
    other rows; without any such row results.csv keeps its columns; a bad std is a damaged run."""
    subjects = [0, 0, 1, 1, 2, 2]
    spearman, coverage = [0.1, 0.3, 0.5, 0.5, 0.2, 0.8], [0.9, 1.0, 0.8, 0.6, 0.7, 0.7]
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.5, 1.0, (6, 16, 16))
    plain = image_run(
        tmp_path / "plain", "cg_sense", reference + 0.1 * rng.random(reference.shape), reference, subjects
    )
    recon = reference + 0.1 * rng.random(reference.shape)
    sampled = with_std(image_run(tmp_path / "s", "flow_l1", recon, reference, subjects), spearman, coverage)
    before = report.results_csv(report.Report("t", "slice", table_of([plain]), [], [], [], []))
    assert before.splitlines()[0] == ",".join(report.result_columns([]))
    assert "std_spearman" not in before
    for level in ("slice", "volume"):
        table = table_of([plain, sampled], level)
        row = next(r for r in table if r["method"] == "flow_l1")
        assert row["std_spearman_mean"] == pytest.approx(np.mean([0.2, 0.5, 0.5]))  # per subject, then mean
        assert row["std_coverage_mean"] == pytest.approx(np.mean([0.95, 0.7, 0.7]))
        assert not next(r for r in table if r["method"] == "cg_sense")["has_std"]
    text = report.results_csv(report.Report("t", "slice", table, [], [], [], []))
    head, *rows = [line.split(",") for line in text.splitlines()]
    assert head == report.result_columns([], has_std=True) and "std_coverage_high" in head
    cells = {r[head.index("method")]: r[head.index("std_spearman_mean")] for r in rows}
    assert cells["cg_sense"] == "" and float(cells["flow_l1"]) == pytest.approx(0.4)
    with h5py.File(sampled / "recon.h5", "a") as h5:
        del h5["std"]
        h5["std"] = np.zeros((2, 2), np.float32)
    with pytest.raises(Damaged, match="recon.h5: std"):
        load(sampled, "slice")


def budget(epochs: int, seconds: float | None, device: str = "cpu", processes: int = 1) -> dict:
    """A reconstruct run's checkpoint_info budget (io.provenance.training_budget's fields)."""
    return {
        "parameters": 123_456,
        "epochs": epochs,
        "steps": 10 * epochs,
        "seconds": seconds,
        "device": device,
        "processes": processes,
        "threads": 1,
    }


def learned_run(path: Path, method: str, run_budget: dict, psnr: np.ndarray = PSNR) -> Path:
    extra = checkpoint(f"/t/{method}/checkpoints/best.pt")
    extra["checkpoint_info"]["budget"] = run_budget
    return fake_run(path, method, "4bit_quarter", psnr, summary_extra=extra)


def test_learned_rows_show_their_training_budget_and_unequal_budgets_are_warned(tmp_path):
    """Each learned row carries its checkpoint's parameters, epochs, training seconds and device
    (results.csv and the markdown's training column); learned rows of one table trained for neither
    the same epochs nor the same time (within 10 %), or on other devices, are warned; classical rows
    carry none and no warning."""
    equal = [
        learned_run(tmp_path / "a", "dbp", budget(20, 600.0)),
        learned_run(tmp_path / "b", "modl", budget(20, 640.0)),
        fake_run(tmp_path / "c", "cs_wavelet", "4bit_quarter", PSNR - 1),
    ]
    table = table_of(equal)
    dbp = next(r for r in table if r["method"] == "dbp")
    assert (dbp["parameters"], dbp["epochs"], dbp["train_seconds"], dbp["train_device"]) == (123_456, 20, 600.0, "cpu")
    assert not any(r["warning"] for r in table)
    cs = next(r for r in table if r["method"] == "cs_wavelet")
    assert all(cs[c] == "" for c in budgets.COLUMNS) and budgets.text(cs) == ""
    assert budgets.text(dbp) == "20 ep, 10.0 min, cpu, 0.123 M params"
    assert budgets.duration(42.4) == "42 s" and budgets.duration(900.0) == "15.0 min"
    assert set(budgets.COLUMNS) <= set(report.result_columns([]))
    for changed, why in (
        (budget(40, 900.0), "epochs 20, 40; training 10.0 min to 15.0 min"),
        (budget(40, None), "epochs 20, 40; a training time not recorded"),
        (budget(20, 600.0, "cuda", 2), "devices cpu, cuda x2"),
    ):
        other = learned_run(tmp_path / f"m{len(why)}{changed['epochs']}", "modl", changed)
        rows = table_of([equal[0], other, equal[2]])
        warned = {r["method"]: r["warning"] for r in rows}
        assert why in warned["dbp"] and why in warned["modl"] and warned["cs_wavelet"] == "", why
    # the same epochs in other times, or the same time in other epochs (a time budget): one budget
    for same, name in ((budget(20, 900.0), "same_epochs"), (budget(40, 620.0), "same_time")):
        rows = table_of([equal[0], learned_run(tmp_path / name, "modl", same), equal[2]])
        assert not any(r["warning"] for r in rows), name


def test_training_budget_of_a_checkpoint():
    ckpt = {
        "state": {"epoch": 7, "step": 35, "seconds": 12.5, "world_size": 2},
        "config": {"hardware": {"device": "cuda", "threads": 4}},
    }
    assert provenance.training_budget(ckpt, 99) == {
        "parameters": 99,
        "epochs": 7,
        "steps": 35,
        "seconds": 12.5,
        "device": "cuda",
        "processes": 2,
        "threads": 4,
    }
    assert provenance.training_budget({"state": {"epoch": 1}}, 5)["seconds"] is None  # not recorded: unknown
