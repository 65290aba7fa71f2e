"""The OpenAPI schema: it generates without a warning, is valid OpenAPI 3, its docs page
works offline, and the real answers of every endpoint are what it says."""

import copy
import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from tests.conftest import ROOT


def test_the_schema_generates_without_warnings_and_is_valid_openapi_3(tmp_path):
    out = tmp_path / "schema.yaml"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings",
           "HF_HUB_OFFLINE": "1"}
    env.pop("ZOORANK_VAR_DIR", None)
    run = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate",
                          "--fail-on-warn", "--file", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stderr and "Error" not in run.stderr, run.stderr
    assert out.read_text().startswith("openapi: 3.0.3")


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    generated = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(generated)  # raises unless valid OpenAPI 3
    return json.loads(json.dumps(generated, default=str))


def test_every_api_view_is_in_the_schema_with_its_answers(schema):
    from django.urls import get_resolver

    from transferability.api import urls

    routes = {"/api/" + re.sub(r"<int:(\w+)>", "{id}", str(p.pattern))
              for p in urls.urlpatterns if p.name not in {"api-schema", "api-docs"}}
    assert routes == set(schema["paths"])
    assert get_resolver().resolve("/api/docs/").url_name == "api-docs"

    def codes(path, method):
        return set(schema["paths"][path][method]["responses"])

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)
            # Not there (or not yours), or a page past the last of a list.
            paginated = method == "get" and "Paginated" in str(operation["responses"]["200"])
            assert ("404" in operation["responses"]) == ("{id}" in path or paginated), (
                method, path)
            assert operation.get("description"), (method, path)
    for path in ("/api/datasets/", "/api/evaluations/", "/api/transfers/"):
        assert {"400", "429"} <= codes(path, "post")
        list_body = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert list_body["application/json"]["schema"]["$ref"].startswith(
            "#/components/schemas/Paginated")
    assert {"202", "400"} <= codes("/api/datasets/", "post")
    assert {"202", "400"} <= codes("/api/evaluations/", "post")
    assert {"202", "400", "409"} <= codes("/api/transfers/", "post")
    assert {"202", "400", "409", "429"} <= codes("/api/evaluations/{id}/truth/", "post")
    assert {"202", "409", "429"} <= codes("/api/evaluations/{id}/retry/", "post")
    assert {"200", "409"} <= codes("/api/evaluations/{id}/cancel/", "post")
    assert {"204", "409"} <= codes("/api/evaluations/{id}/", "delete")
    upload = schema["paths"]["/api/datasets/"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert schema["components"]["schemas"]["DatasetUploadRequest"]["properties"]["file"] == {
        "type": "string", "format": "binary",
        "description": "A zip archive with one folder of images per class."}
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}


def test_the_docs_page_works_offline(client, db):
    from django.contrib.staticfiles import finders

    page = client.get("/api/docs/")  # readable before logging in, like the login page says
    assert page.status_code == 200
    html = page.content.decode()
    # Its script comes from the site too (?script), not inline: the CSP allows no such script.
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200 and "javascript" in script["Content-Type"]
    assert "SwaggerUIBundle" in script.content.decode()
    assert '"/api/schema/"' in script.content.decode()
    assert "<script>" not in html
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert len(links) >= 3
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
        if link.startswith("/static/"):
            assert finders.find(link.removeprefix("/static/")), link
        else:
            assert client.get(link).status_code in (200, 302), link
    assert not re.search(r"https?://(?!swagger\.io)", html.replace("http://testserver", ""))
    schema = client.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200 and schema.json()["openapi"] == "3.0.3"


# The real answers against the schema.

def json_schema(openapi: dict, node: dict) -> dict:
    """An OpenAPI 3.0 schema as JSON Schema: nullable as a null alternative, and objects
    that list their properties closed to any other (a key the schema does not name fails)."""

    def convert(value):
        if isinstance(value, list):
            return [convert(v) for v in value]
        if not isinstance(value, dict):
            return value
        value = {k: convert(v) for k, v in value.items()}
        if "properties" in value and "additionalProperties" not in value:
            value["additionalProperties"] = False
        if value.pop("nullable", False):
            value = {"anyOf": [value, {"type": "null"}]}
        return value

    return {**convert(copy.deepcopy(node)),
            "components": {"schemas": convert(openapi["components"]["schemas"])}}


def check(schema, response, path, method=None, code=None):
    method = method or response.request["REQUEST_METHOD"].lower()
    code = str(code or response.status_code)
    documented = schema["paths"][path][method]["responses"]
    assert code in documented, (method, path, code, response.content[:300])
    if response.status_code == 204:
        assert "content" not in documented[code] and not response.content
        return None
    body = response.json()
    node = documented[code]["content"]["application/json"]["schema"]
    jsonschema.validate(body, json_schema(schema, node))
    return body


@pytest.fixture
def finished(owner, tmp_path, sent_tasks, django_capture_on_commit_callbacks):
    from transferability.datasets import create_target_dataset
    from transferability.submission import submit_evaluation
    from workers import jobs

    archive = image_folder_zip(tmp_path / "c.zip", {"red": 8, "green": 8, "blue": 8}, seed=2)
    dataset = create_target_dataset(owner, "colours", archive)
    checkpoints = [saved_checkpoint("teacher-resnet", "test_resnet", num_classes=10, seed=1,
                                    source_classes=[str(i) for i in range(10)]),
                   saved_checkpoint("student-vit", "test_vit", seed=3)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["tmi", "logme"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == "done", evaluation.message
    return evaluation


@pytest.mark.django_db
def test_every_answer_is_what_the_schema_says(schema, api, outsider_api, owner, finished,
                                              tmp_path, sent_tasks, settings,
                                              django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    from workers import transfers, verification

    e = finished.pk
    check(schema, api.get("/api/"), "/api/")
    check(schema, api.get("/api/datasets/"), "/api/datasets/")
    check(schema, api.get(f"/api/datasets/{finished.dataset_id}/"), "/api/datasets/{id}/")
    check(schema, api.get("/api/checkpoints/", {"search": "resnet"}), "/api/checkpoints/")
    check(schema, api.get("/api/metrics/"), "/api/metrics/")
    check(schema, api.get("/api/evaluations/"), "/api/evaluations/")
    body = check(schema, api.get(f"/api/evaluations/{e}/"), "/api/evaluations/{id}/")
    assert body["truth"] is None and len(body["results"]) == 2

    # Ground truth (the quick linear probe) and a transfer, each run here.
    with django_capture_on_commit_callbacks(execute=True):
        accepted = api.post(f"/api/evaluations/{e}/truth/", {"mode": "probe"}, format="json")
    check(schema, accepted, "/api/evaluations/{id}/truth/")
    check(schema, api.post(f"/api/evaluations/{e}/truth/", {}, format="json"),
          "/api/evaluations/{id}/truth/", code=409)
    verification.run_truth_inline(finished.truth.pk)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post("/api/transfers/", {"evaluation": e, "teacher": "teacher-resnet",
                                                "student": "student-vit"}, format="json")
    pending = check(schema, started, "/api/transfers/")
    transfers.transfer_knowledge(pending["id"])
    done = check(schema, api.get(pending["url"]), "/api/transfers/{id}/")
    assert done["status"] == "done" and done["delta"]
    check(schema, api.get("/api/transfers/"), "/api/transfers/")
    body = check(schema, api.get(f"/api/evaluations/{e}/"), "/api/evaluations/{id}/")
    assert body["truth"]["status"] == "done" and body["truth"]["agreement"]
    assert body["complementarity"]

    # Errors.
    check(schema, APIClient().get("/api/evaluations/"), "/api/evaluations/")
    check(schema, outsider_api.get(f"/api/evaluations/{e}/"), "/api/evaluations/{id}/")
    check(schema, api.post(f"/api/evaluations/{e}/cancel/"), "/api/evaluations/{id}/cancel/")
    check(schema, api.post(f"/api/evaluations/{e}/retry/"), "/api/evaluations/{id}/retry/")
    check(schema, api.post("/api/evaluations/", {"dataset": finished.dataset_id,
                                                 "checkpoints": ["nope"]}, format="json"),
          "/api/evaluations/")
    check(schema, api.post("/api/datasets/", {"name": "x"}, format="multipart"),
          "/api/datasets/")
    check(schema, api.post("/api/transfers/", {"evaluation": e, "teacher": 1}, format="json"),
          "/api/transfers/")

    # Submitting, cancelling, deleting.
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post("/api/evaluations/", {"dataset": finished.dataset_id,
                                               "checkpoints": "all"}, format="json")
    second = check(schema, again, "/api/evaluations/")
    check(schema, api.post(f"/api/evaluations/{second['id']}/cancel/"),
          "/api/evaluations/{id}/cancel/")
    with django_capture_on_commit_callbacks(execute=True):
        check(schema, api.post(f"/api/evaluations/{second['id']}/retry/"),
              "/api/evaluations/{id}/retry/")
    check(schema, api.delete(f"/api/evaluations/{second['id']}/"), "/api/evaluations/{id}/")
    archive = image_folder_zip(tmp_path / "d.zip", {"a": 2, "b": 2})
    with open(archive, "rb") as f:
        uploaded = check(schema, api.post("/api/datasets/", {"name": "d", "file": f},
                                          format="multipart"), "/api/datasets/")
    check(schema, api.delete(uploaded["url"]), "/api/datasets/{id}/")

    from django.core.cache import caches

    caches["limits"].clear()
    settings.ZOORANK_SUBMIT_RATE = "1/day"
    api.post("/api/transfers/", {}, format="json")
    check(schema, api.post("/api/transfers/", {}, format="json"), "/api/transfers/", code=429)
    caches["limits"].clear()
