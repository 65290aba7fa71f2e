"""``manage.py build_demo_zoo --only``: every name given is built, however it is given."""

import pytest
from django.core.management import CommandError, call_command

from zoo.demo_zoo import DEMO_ZOO

A, B, C = (r.name for r in DEMO_ZOO[:3])


@pytest.fixture
def built(monkeypatch):
    """The recipes the command would train, instead of training them."""
    asked = []
    monkeypatch.setattr("zoo.management.commands.build_demo_zoo.build_zoo",
                        lambda recipes, **kwargs: asked.append([r.name for r in recipes]))
    return asked


@pytest.mark.parametrize("args", [
    ["--only", A, "--only", B],
    ["--only", A, B],
    ["--only", f"{A},{B}"],
    ["--only", B, "--only", A],
], ids=["repeated", "several", "comma-separated", "any order"])
def test_each_name_given_is_built(built, args):
    call_command("build_demo_zoo", *args, "--no-progress")
    assert built == [[A, B]]  # in zoo order


def test_repeated_and_listed_names_mix(built):
    call_command("build_demo_zoo", "--only", A, B, "--only", C, "--no-progress")
    assert built == [[A, B, C]]


def test_without_only_the_whole_zoo_is_built(built):
    call_command("build_demo_zoo", "--no-progress")
    assert built == [[r.name for r in DEMO_ZOO]]


def test_an_unknown_name_among_several_is_named(built):
    with pytest.raises(CommandError, match="no demo checkpoint named nope"):
        call_command("build_demo_zoo", "--only", A, "--only", "nope", "--no-progress")
    assert built == []
