"""The proposed set of teachers: a greedy cover of the student's errors."""

import numpy as np
import pytest

from transferability.teacher_cover import greedy_cover


def samples(*right: int, n: int = 10) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(right)] = True
    return out


def test_the_greedy_cover_of_a_constructed_case():
    """The student is wrong on samples 0-5. A covers 0-3, B covers 2-4 (two of them A's
    already), C covers 4-5, D covers 0-1 (inside A's): the cover is A, then C (2 new), then
    B adds nothing new and is not proposed; D is named as covered."""
    correct = {
        "student": samples(6, 7, 8, 9),
        "A": samples(0, 1, 2, 3, 9),
        "B": samples(2, 3, 4),
        "C": samples(4, 5, 6),
        "D": samples(0, 1),
    }
    proposal = greedy_cover(correct, "student")
    assert proposal["accuracy"] == pytest.approx(40.0)
    assert [p["teacher"] for p in proposal["picks"]] == ["A", "C"]
    a, c = proposal["picks"]
    assert (a["flips"], a["new"], a["covered_before"]) == (40.0, 40.0, 0.0)
    assert a["oracle_accuracy"] == pytest.approx(80.0)
    assert (c["flips"], c["new"], c["covered_before"]) == (20.0, 20.0, 0.0)
    assert c["oracle_accuracy"] == pytest.approx(100.0)
    left_out = {item["teacher"]: item["covered"] for item in proposal["left_out"]}
    assert left_out["B"] == 1.0 and "D" in left_out
    assert sum("Left out" in w for w in proposal["warnings"]) == 1  # one line for them all
    assert "B (100%)" in " ".join(proposal["warnings"])


def test_ties_go_to_the_teacher_with_less_overlap_and_the_limit_holds():
    correct = {"s": samples(), "wide": samples(0, 1, 2, 3), "x": samples(0, 1),
               "y": samples(2, 3), "z": samples(4)}
    proposal = greedy_cover(correct, "s", limit=2)
    assert [p["teacher"] for p in proposal["picks"]] == ["wide", "z"]
    assert len(proposal["picks"]) == 2


def test_a_pick_mostly_covered_already_is_warned_about():
    correct = {"s": samples(), "a": samples(0, 1, 2, 3), "b": samples(2, 3, 4)}
    proposal = greedy_cover(correct, "s")
    assert [p["teacher"] for p in proposal["picks"]] == ["a", "b"]
    assert proposal["picks"][1]["covered_before"] == pytest.approx(2 / 3)
    assert proposal["warnings"] == ["67% of b's flips are covered by the teachers before it: "
                                    "it adds 10.0 points at most"]


def test_no_teacher_knows_anything_the_student_does_not():
    proposal = greedy_cover({"s": samples(0, 1), "t": samples(0)}, "s")
    assert proposal["picks"] == [] and proposal["warnings"] == []
    with pytest.raises(ValueError, match="no per-sample results for nobody"):
        greedy_cover({"s": samples()}, "nobody")
