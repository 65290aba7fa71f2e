"""Every API operation driven with generated input (schemathesis), as an owner and as a
second user: no 500, no response that breaks the schema, nothing of the owner's reachable.

Bounded here (``ZOORANK_FUZZ_EXAMPLES``, default 25 per operation); ``make fuzz`` runs the
long form.
"""

import os
import uuid

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings as hypothesis_settings  # noqa: E402

from tests.builders import image_folder_zip, saved_checkpoint  # noqa: E402

EXAMPLES = int(os.environ.get("ZOORANK_FUZZ_EXAMPLES", "25"))
# A schema-valid body may still be refused for what it means (a file that is not a zip, a
# checkpoint that is not in the evaluation): those 400s are right, so that check is off.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture
def api_schema(db):
    """The schema the app serves, and the app itself as the transport (WSGI, in-process).

    As Django's test client does, requests do not close the database connection, which
    holds the test's transaction.
    """
    from django.core import signals
    from django.db import close_old_connections

    from config.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def two_users(django_user_model, tmp_path, settings):
    """An owner with a dataset, a finished evaluation and a transfer; an outsider; tokens."""
    from rest_framework.authtoken.models import Token

    from transferability.datasets import create_target_dataset
    from transferability.submission import submit_evaluation
    from workers import jobs

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
    owner = django_user_model.objects.create_user(f"own-{uuid.uuid4().hex[:6]}", password="x")
    other = django_user_model.objects.create_user(f"oth-{uuid.uuid4().hex[:6]}", password="x")
    archive = image_folder_zip(tmp_path / "a.zip", {"a": 4, "b": 4}, seed=1)
    dataset = create_target_dataset(owner, "owned", archive)
    checkpoints = [saved_checkpoint("fz-1", seed=1), saved_checkpoint("fz-2", seed=2)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["tmi"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    # A checkpoint of the owner's own (a student distilled on their data): theirs alone.
    own_checkpoint = saved_checkpoint("fz-own", seed=3, owner=owner)
    return {"owner": Token.objects.create(user=owner).key,
            "other": Token.objects.create(user=other).key,
            "dataset": dataset, "evaluation": evaluation, "checkpoint": own_checkpoint}


def operations(schema):
    """Every operation of the schema (an operation that cannot be generated fails here)."""
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())
    assert found, "the schema has no operations"
    return found


def fuzz(operation, examples: int, check) -> None:
    """Run ``check(case)`` on ``examples`` generated cases of one operation."""
    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=examples, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
    def run(case):
        check(case)

    run()


def test_no_server_error_and_every_response_fits_the_schema(api_schema, two_users, sent_tasks):
    headers = {"Authorization": f"Token {two_users['owner']}"}
    ops = operations(api_schema)
    for operation in ops:
        fuzz(operation, EXAMPLES, lambda case: case.call_and_validate(
            headers=headers, excluded_checks=EXCLUDED))
    assert len(ops) >= 10  # datasets, evaluations, truth, transfers, checkpoints, metrics...


def test_a_second_user_never_reaches_the_owners_objects(api_schema, two_users, sent_tasks):
    """Path ids point at the owner's objects: the outsider gets 4xx and none of their data."""
    headers = {"Authorization": f"Token {two_users['other']}"}
    dataset, evaluation = two_users["dataset"], two_users["evaluation"]
    checkpoint = two_users["checkpoint"]

    def check(case):
        for name in list(case.path_parameters or {}):
            case.path_parameters[name] = (
                dataset.pk if "dataset" in case.path else
                checkpoint.pk if "checkpoint" in case.path else evaluation.pk)
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text[:300])
        if case.path_parameters:
            assert 400 <= response.status_code < 500, (case.method, case.path,
                                                        response.status_code)
        assert dataset.content_hash not in response.text, (case.method, case.path)

    for operation in operations(api_schema):
        fuzz(operation, max(5, EXAMPLES // 5), check)
