"""evaluate's decision rule under the null and under a real effect, by simulation: one command,
one table (.venv/bin/python scripts/stats_null.py [sims], default 1000).

Paired differences of n subjects x 15 slices: effect + subject effect (sd 1) + slice noise (sd 1).
Columns: the share of simulations called `resolved` with the subject as the unit (evaluate's rule
when subjects are recorded), with each slice taken as independent (the rule without subjects:
wrong for clustered data, shown for contrast), and the power of the subject rule at effect 1.5.
The interval's coverage of the true mean (0.95 nominal) is the last column.
"""

from __future__ import annotations

import sys

import numpy as np

from mrirecon import stats

SLICES = 15


def simulate(subjects: int, effect: float, sims: int, seed: int) -> tuple[float, float, float]:
    """(resolved over subjects, resolved over slices, coverage of the interval over subjects)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(subjects), SLICES)
    by_subject = by_slice = covered = 0
    for _ in range(sims):
        d = effect + np.repeat(rng.normal(0, 1, subjects), SLICES) + rng.normal(0, 1, labels.size)
        r = stats.paired(d, np.zeros_like(d), labels, "subjects")
        by_subject += r.resolved
        covered += r.low <= effect <= r.high
        by_slice += stats.paired(d, np.zeros_like(d)).resolved
    return by_subject / sims, by_slice / sims, covered / sims


def main() -> None:
    sims = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"{sims} simulations per row; {SLICES} slices per subject, subject sd 1, slice sd 1; ALPHA {stats.ALPHA}")
    print("subjects | null: resolved (subjects) | null: resolved (slices as units) | effect 1.5: resolved | coverage")
    for n in (2, 3, 4, 6, 10, 20):
        null_subjects, null_slices, coverage = simulate(n, 0.0, sims, n)
        power, _, _ = simulate(n, 1.5, sims, 100 + n)
        print(f"{n:8d} | {null_subjects:25.3f} | {null_slices:32.3f} | {power:20.3f} | {coverage:8.3f}")


if __name__ == "__main__":
    main()
