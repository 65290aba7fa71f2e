"""The account pages: the API token page, the login page, logging out."""

import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _shown_token(html: str) -> str | None:
    found = re.search(r'<input id="token"[^>]*value="([0-9a-f]{40})"', html)
    return found.group(1) if found else None


def _api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/").status_code


def test_the_token_page_needs_a_login(client):
    response = client.get("/accounts/token/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/accounts/token/")
    assert client.post("/accounts/token/").status_code == 302
    assert not Token.objects.exists()


def test_the_token_page_makes_shows_and_replaces_the_token(client, owner):
    client.force_login(owner)
    html = client.get("/accounts/token/").content.decode()
    assert "You have no API token yet" in html and _shown_token(html) is None
    assert not Token.objects.exists()  # looking does not make one

    response = client.post("/accounts/token/", follow=True)
    assert response.redirect_chain == [("/accounts/token/", 302)]
    html = response.content.decode()
    first = _shown_token(html)
    assert first == Token.objects.get(user=owner).key
    assert "Your token was made." in html
    assert f'Authorization: Token {first}' in html  # a curl line to copy
    assert _api_status(first) == 200

    html = client.post("/accounts/token/", follow=True).content.decode()
    second = _shown_token(html)
    assert second and second != first
    assert "the old one no longer works" in html
    assert _api_status(second) == 200
    assert _api_status(first) == 401
    assert client.get("/accounts/token/").content.decode().count(second) == 2


def test_regenerating_needs_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = client.get("/accounts/token/").content.decode()
    assert client.post("/accounts/token/").status_code == 403
    assert not Token.objects.exists()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post("/accounts/token/", {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302 and Token.objects.filter(user=owner).exists()


def test_only_get_and_post(client, owner):
    client.force_login(owner)
    assert client.put("/accounts/token/").status_code == 405
    assert client.delete("/accounts/token/").status_code == 405


def test_the_header_links_the_token_page_and_the_api_docs(client, owner):
    client.force_login(owner)
    html = client.get("/").content.decode()
    nav = re.search(r"<nav>.*?</nav>", html, re.S).group(0)
    assert '<a href="/accounts/token/">API token</a>' in nav
    assert '<a href="/api/docs/">API</a>' in nav


def test_the_login_page_says_what_the_app_is_and_links_the_api_docs(client):
    html = client.get("/accounts/login/").content.decode()
    assert "zoorank ranks pretrained image models for your dataset" in html
    assert 'href="/api/docs/"' in html
    assert client.get("/api/docs/").status_code == 200  # readable before logging in


def test_logging_out_says_so_on_the_login_page(client, owner):
    client.force_login(owner)
    assert client.get("/accounts/logout/").status_code == 405  # POST only, from the header
    response = client.post("/accounts/logout/", follow=True)
    assert response.redirect_chain == [("/accounts/login/", 302)]
    html = response.content.decode()
    assert '<p class="flash info">You are logged out.</p>' in html
    assert "_auth_user_id" not in client.session
    # Said once, not on every later visit; a logout without a session says nothing.
    assert "You are logged out." not in client.get("/accounts/login/").content.decode()
    again = client.post("/accounts/logout/", follow=True).content.decode()
    assert "You are logged out." not in again
