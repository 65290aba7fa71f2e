"""Which teachers to distil into one student: a greedy cover of the student's errors.

A teacher can only teach a student the samples it gets right and the student gets wrong
(its positive flips over the student, "Fantastic Gains" section 3). For several teachers
what matters is how many of the student's errors they cover together: two teachers that
are right on the same samples offer the same knowledge twice. The proposal adds, one at a
time, the teacher whose flips cover the most errors not yet covered, and stops when no
teacher covers a new one (or at :data:`MAX_PROPOSED`). Beside each addition: the oracle
accuracy of the student and the set so far (a sample counts when any of them is right: the
most a transfer could reach, not what it will reach), and how much of the teacher's own
flips the set already covered. A teacher left out, or added, whose flips are mostly covered
already is named with a warning.
"""

from __future__ import annotations

import numpy as np

MAX_PROPOSED = 3  # the proposal's length; the API accepts up to transfers.MAX_TEACHERS
MOSTLY_COVERED = 0.5  # a share of a teacher's flips already covered that earns a warning


def greedy_cover(correct: dict[str, np.ndarray], student: str,
                 limit: int = MAX_PROPOSED) -> dict:
    """The proposal for ``student`` from per-sample correctness (name -> N booleans).

    Returns {"student", "accuracy" (the student's, %), "picks": [{"teacher", "flips" (its
    positive flips over the student, % of samples), "new" (of them, not covered before, %),
    "covered_before" (share of its flips the set already covered), "oracle_accuracy" (%
    of samples right for the student or any teacher so far)}], "left_out": [{"teacher",
    "covered" (share of its flips the picks cover)}] for the teachers not picked whose flips
    are mostly covered, "warnings": [str]}.
    """
    if student not in correct:
        raise ValueError(f"no per-sample results for {student}")
    right = np.asarray(correct[student], dtype=bool)
    n = right.size
    flips = {name: np.asarray(c, dtype=bool) & ~right for name, c in correct.items()
             if name != student}
    covered = np.zeros(n, dtype=bool)
    picks, chosen = [], []
    while len(picks) < limit:
        # Most newly covered errors; ties by fewer flips in all (less overlap), then name.
        gains = {name: int(np.sum(f & ~covered)) for name, f in flips.items()
                 if name not in chosen}
        if not gains or max(gains.values()) == 0:
            break
        best = min(gains, key=lambda name: (-gains[name], int(flips[name].sum()), name))
        total = int(flips[best].sum())
        picks.append({
            "teacher": best,
            "flips": 100.0 * total / n,
            "new": 100.0 * gains[best] / n,
            "covered_before": 1.0 - gains[best] / total,
            "oracle_accuracy": 100.0 * np.mean(right | covered | flips[best]),
        })
        covered |= flips[best]
        chosen.append(best)
    warnings = []
    for pick in picks:
        if pick["covered_before"] >= MOSTLY_COVERED:
            warnings.append(f"{pick['covered_before']:.0%} of {pick['teacher']}'s flips are "
                            f"covered by the teachers before it: it adds "
                            f"{pick['new']:.1f} points at most")
    left_out = []
    for name, f in sorted(flips.items()):
        total = int(f.sum())
        if name in chosen or total == 0:
            continue
        share = float(np.sum(f & covered)) / total
        if share >= MOSTLY_COVERED:
            left_out.append({"teacher": name, "covered": share})
    # One line for all of them: with a dozen candidates, one each would bury the picks.
    left_out.sort(key=lambda item: (-item["covered"], item["teacher"]))
    if len(left_out) == 1:
        only = left_out[0]
        warnings.append(f"{only['teacher']} is left out: {only['covered']:.0%} of its flips "
                        f"over {student} are covered by the teachers above")
    elif left_out:
        warnings.append(f"Left out, {min(i['covered'] for i in left_out):.0%} or more of their "
                        f"flips over {student} covered by the teachers above: "
                        + ", ".join(f"{i['teacher']} ({i['covered']:.0%})" for i in left_out))
    return {"student": student, "accuracy": 100.0 * right.mean(), "picks": picks,
            "left_out": left_out, "warnings": warnings}


def propose_teachers(evaluation, student: str) -> dict | None:
    """The proposal on an evaluation's per-sample correctness (the feature cache); None
    when the student's results are not there. ``missing`` says which are not."""
    from .pairs import every_correctness

    correct, missing = every_correctness(evaluation)
    if student not in correct:
        return None
    proposal = greedy_cover(correct, student)
    proposal["missing"] = missing
    return proposal


def propose_all(evaluation) -> list[dict]:
    """:func:`greedy_cover` for every checkpoint with per-sample results as the student."""
    from .pairs import every_correctness

    correct, _ = every_correctness(evaluation)
    return [greedy_cover(correct, name) for name in sorted(correct)]
