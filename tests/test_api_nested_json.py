"""A JSON body nested too deeply is a client's mistake (400), never a server error."""

import re

import pytest

pytestmark = pytest.mark.django_db

TOO_DEEP = re.compile(r"JSON nested deeper than (\d+) levels\.")


def post_json(api, body: str):
    return api.generic("POST", "/api/evaluations/", body, content_type="application/json")


def nested(depth: int) -> str:
    return '{"dataset": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


def test_it_answers_400_to_a_body_deep_enough_to_exhaust_the_decoder(api):
    response = post_json(api, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400
    assert TOO_DEEP.fullmatch(response.json()["detail"])


def test_the_bound_is_checked_without_the_decoder_running_out(api):
    from transferability.api.parsers import MAX_JSON_DEPTH

    response = post_json(api, nested(MAX_JSON_DEPTH + 1))
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON nested deeper than {MAX_JSON_DEPTH} levels."}
    # At the bound, the body is parsed and judged by the serializer as usual.
    response = post_json(api, nested(MAX_JSON_DEPTH))
    assert response.status_code == 400
    assert not TOO_DEEP.fullmatch(response.json()["detail"])


def test_brackets_inside_strings_do_not_count(api):
    deep_looking = "[" * 1000 + '\\"{' * 100
    response = post_json(api, '{"dataset": "%s", "checkpoints": []}' % deep_looking)
    assert response.status_code == 400
    assert not TOO_DEEP.fullmatch(response.json()["detail"])


def test_malformed_json_is_still_a_parse_error(api):
    response = post_json(api, '{"dataset": [1, 2')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_uploads_still_take_multipart(api, tmp_path):
    response = api.post("/api/datasets/", {"name": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()
