"""Someone not logged in cannot make the server take in a large body: it is refused
before a byte of it is read, and Django's upload handlers never see it. Logged-in users
and API tokens upload as before."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, FakePayload, encode_multipart

pytestmark = pytest.mark.django_db

UPLOAD = "/datasets/new/"
BIG = 3 * 1024 * 1024  # above the bound, and above FILE_UPLOAD_MAX_MEMORY_SIZE: a temp file
HANDLED = []


class RecordingUploadHandler(FileUploadHandler):
    """Notes each file Django starts to receive; stores nothing."""

    def new_file(self, field_name, file_name, *args, **kwargs):
        HANDLED.append(file_name)

    def receive_data_chunk(self, raw_data, start):
        return raw_data

    def file_complete(self, file_size):
        return None


class CountedPayload(FakePayload):
    """A request body that counts the bytes the server reads of it."""

    def __init__(self, content: bytes):
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size=-1, /):
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size=-1, /):
        data = super().readline(size)
        self.bytes_read += len(data)
        return data


@pytest.fixture(autouse=True)
def recorded_uploads(settings):
    HANDLED.clear()
    settings.FILE_UPLOAD_HANDLERS = ["tests.test_request_body_guard.RecordingUploadHandler",
                                     *settings.FILE_UPLOAD_HANDLERS]
    return HANDLED


def archive_form(size: int = BIG) -> bytes:
    return encode_multipart(BOUNDARY, {"name": "big", "file": SimpleUploadedFile(
        "big.zip", b"\0" * size, content_type="application/zip")})


def post(client, path, body: bytes, content_type=MULTIPART_CONTENT, **extra):
    payload = CountedPayload(body)
    response = client.generic("POST", path, body, content_type=content_type,
                              **{"wsgi.input": payload, **extra})
    return response, payload


@pytest.fixture
def with_csrf_cookie():
    """A client that only has a CSRF cookie, as anyone can get one from the login page."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    return client


def test_a_large_body_without_a_login_is_refused_unread(with_csrf_cookie, recorded_uploads):
    response, body = post(with_csrf_cookie, UPLOAD, archive_form())

    assert response.status_code == 413
    assert response.content.decode() == "Request body too large: at most 1 MiB without " \
                                        "logging in."
    assert body.bytes_read == 0
    assert recorded_uploads == []


def test_on_the_api_the_refusal_is_json(client):
    response, body = post(client, "/api/datasets/", archive_form())

    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: at most 1 MiB without "
                                         "logging in."}
    assert body.bytes_read == 0


def test_the_login_pages_take_no_large_body_either(with_csrf_cookie):
    for path in ("/accounts/login/", "/admin/login/"):
        response, body = post(with_csrf_cookie, path, archive_form())
        assert response.status_code == 413, path
        assert body.bytes_read == 0


def test_a_body_of_unsaid_length_without_a_login_is_refused(with_csrf_cookie):
    response, body = post(with_csrf_cookie, UPLOAD, b"", HTTP_TRANSFER_ENCODING="chunked")

    assert response.status_code == 411
    assert "Content-Length" in response.content.decode()
    assert body.bytes_read == 0


def test_a_small_body_without_a_login_meets_the_csrf_check_as_before(with_csrf_cookie):
    response, _ = post(with_csrf_cookie, UPLOAD, b"name=x",
                       content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403


def test_logging_in_still_works(owner):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post("/accounts/login/", {"username": "alice",
                                                "password": "alice-password-1",
                                                "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_a_logged_in_user_still_uploads_a_large_body(client, owner, recorded_uploads):
    client.force_login(owner)

    response, body = post(client, UPLOAD, archive_form())

    assert response.status_code != 413
    assert body.bytes_read == len(archive_form())
    assert recorded_uploads == ["big.zip"]


def test_an_api_token_still_uploads_a_large_body(api, recorded_uploads):
    response, body = post(api, "/api/datasets/", archive_form())

    assert response.status_code == 400  # read whole, then found not to be a zip
    assert response.json()["file"] == ["the file is not a zip archive"]
    assert recorded_uploads == ["big.zip"]


def test_a_wrong_token_is_refused_by_the_api_before_it_reads_the_body(client):
    response, body = post(client, "/api/datasets/", archive_form(),
                          HTTP_AUTHORIZATION="Token " + "0" * 40)

    assert response.status_code == 401
    assert body.bytes_read == 0
