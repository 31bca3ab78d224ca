"""Training budgets in evaluate's tables: for each learned row, what training its checkpoint
cost (parameters, epochs, training seconds, device: recorded by reconstruct from the checkpoint,
mrirecon.io.provenance.training_budget), and a warning on the learned rows of a table whose
budgets differ (neither the same epochs nor the same training time, or another device), so that
a comparison of methods is not read as one of training budgets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mrirecon.evaluation.runs import Run

COLUMNS = ("parameters", "epochs", "train_seconds", "train_device")
SECONDS_TOLERANCE = 1.1  # training times within 10 % of each other count as one budget


def of(run: Run) -> dict[str, Any]:
    """The budget columns of a run's row ('' for a run without a checkpoint, or a value its
    checkpoint did not record)."""
    budget = (run.summary.get("checkpoint_info") or {}).get("budget") or {}
    if not budget:
        return dict.fromkeys(COLUMNS, "")
    device = str(budget.get("device") or "")
    processes = int(budget.get("processes") or 1)
    seconds = budget.get("seconds")
    return {
        "parameters": budget.get("parameters", ""),
        "epochs": "" if budget.get("epochs") is None else budget["epochs"],
        "train_seconds": "" if seconds is None else float(seconds),
        "train_device": f"{device} x{processes}" if processes > 1 else device,
    }


def duration(seconds: float) -> str:
    """'42 s' under two minutes, else '15.0 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def text(row: dict[str, Any]) -> str:
    """The markdown cell of a row's budget: '46 ep, 15.0 min, cpu, 0.68 M params' ('' without one)."""
    if row.get("parameters", "") == "":
        return ""
    parts = [f"{row['epochs']} ep" if row["epochs"] != "" else "? ep"]
    parts.append(duration(row["train_seconds"]) if row["train_seconds"] != "" else "? s")
    parts.append(str(row["train_device"] or "?"))
    parts.append(f"{int(row['parameters']) / 1e6:.3g} M params")
    return ", ".join(parts)


def unequal(rows: list[dict[str, Any]]) -> str | None:
    """Why the budgets of these learned rows differ, or None when they match (or fewer than two
    rows have one). Budgets match on one device when the rows trained for the same epochs or for
    the same time (within SECONDS_TOLERANCE): a time budget gives each family its own epochs."""
    learned = [r for r in rows if r.get("parameters", "") != ""]
    if len(learned) < 2:
        return None
    reasons = []
    epochs = sorted({r["epochs"] for r in learned}, key=str)
    seconds = [r["train_seconds"] for r in learned]
    same_time = "" not in seconds and max(seconds) <= SECONDS_TOLERANCE * min(seconds)
    if len(epochs) > 1 and not same_time:
        times = (
            "a training time not recorded"
            if "" in seconds
            else f"training {duration(min(seconds))} to {duration(max(seconds))}"
        )
        reasons.append(f"epochs {', '.join(map(str, epochs))}; {times}")
    devices = sorted({str(r["train_device"]) for r in learned})
    if len(devices) > 1:
        reasons.append(f"devices {', '.join(devices)}")
    return "; ".join(reasons) or None


def warn_unequal(table: list[dict[str, Any]], group_of: Callable[[dict[str, Any]], tuple[str, ...]]) -> None:
    """Warn every learned row of a table (rows compared with each other: `group_of`) whose
    learned rows were trained with unequal budgets."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        groups[group_of(row)].append(row)
    for rows in groups.values():
        why = unequal(rows)
        if why is None:
            continue
        warning = f"unequal training budgets among the learned rows ({why}): a difference may be the budget's"
        for row in rows:
            if row.get("parameters", "") != "":
                row["warnings"].append(warning)
                row["warning"] = " | ".join(row["warnings"])
