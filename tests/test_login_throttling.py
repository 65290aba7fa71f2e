"""Guessing is slowed down: failed logins lock the username and the address for a while (both
login pages, the page saying when to try again); wrong API tokens lock the address; a new
password revokes the API token."""

import re
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("sam-staff", "sam@example.org",
                                                      "sam-password-1")


def log_in(client, username, password, address=ATTACKER, url=LOGIN, **headers):
    return client.post(url, {"username": username, "password": password},
                       REMOTE_ADDR=address, **headers)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(times, username="alice", address=ATTACKER, url=LOGIN):
    """Wrong passwords, each from a fresh client; the last response."""
    for _ in range(times):
        response = log_in(Client(), username, "wrong-password", address, url)
    return response


def age_failures(minutes):
    """As if the failures so far were made that many minutes earlier."""
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


# Logins ---------------------------------------------------------------------------------------

def test_it_locks_the_username_after_five_failures_and_says_when_to_retry(owner):
    for _ in range(4):
        assert fail(1).status_code == 200
    response = fail(1)
    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    html = response.content.decode()
    assert "Too many failed login attempts. Try again in 15 minutes." in html
    # The site's own styled page, with its form, not a bare refusal.
    assert "<h1>Log in</h1>" in html and 'name="username"' in html
    assert "zoorank.css" in html
    assert "didn&#x27;t match" not in html


def test_the_right_password_does_not_log_in_during_the_lock(owner):
    fail(5)
    client = Client()
    response = log_in(client, "alice", "alice-password-1")
    assert response.status_code == 429
    assert "Try again in 15 minutes" in response.content.decode()
    assert not logged_in(client)


def test_it_locks_the_username_from_every_address(owner):
    for i in range(5):
        fail(1, address=f"192.0.2.{i + 1}")
    client = Client()
    response = log_in(client, "alice", "alice-password-1", address=ELSEWHERE)
    assert response.status_code == 429 and not logged_in(client)


def test_it_locks_the_address_for_every_username(owner, outsider):
    for name in ("bob", "carol", "dave", "erin", "frank"):
        fail(1, username=name)
    client = Client()
    response = log_in(client, "alice", "alice-password-1")
    assert response.status_code == 429 and not logged_in(client)
    assert "Too many failed login attempts" in response.content.decode()
    # Neither the users nor the other addresses are locked by it.
    elsewhere = Client()
    assert log_in(elsewhere, "mallory", "mallory-password-1", address=ELSEWHERE).status_code == 302
    assert logged_in(elsewhere)


def test_a_login_of_ones_own_does_not_clear_the_address_count(owner, outsider):
    fail(4, username="alice")
    mallory = Client()
    assert log_in(mallory, "mallory", "mallory-password-1").status_code == 302
    assert fail(1, username="alice").status_code == 429


def test_the_page_says_the_minutes_left_and_the_lock_ends(owner):
    fail(5)
    age_failures(10)
    response = log_in(Client(), "alice", "alice-password-1")
    assert response.status_code == 429
    assert "Try again in 5 minutes." in response.content.decode()
    assert 4 * 60 < int(response["Retry-After"]) <= 5 * 60
    age_failures(6)
    client = Client()
    response = log_in(client, "alice", "alice-password-1")
    assert response.status_code == 302 and logged_in(client)


def test_the_limits_come_from_the_settings(owner, settings):
    settings.ZOORANK_LOGIN_FAILURES = 2
    settings.ZOORANK_LOGIN_COOLOFF_MINUTES = 3
    assert fail(1).status_code == 200
    response = fail(1)
    assert response.status_code == 429
    assert "Try again in 3 minutes." in response.content.decode()


def test_the_admin_login_is_locked_with_the_message_on_its_own_page(staff):
    fail(5, username="sam-staff", url=ADMIN_LOGIN)
    client = Client()
    response = log_in(client, "sam-staff", "sam-password-1", url=ADMIN_LOGIN)
    assert response.status_code == 429
    html = response.content.decode()
    assert re.search(r'<p class="errornote">\s*Too many failed login attempts. '
                     r'Try again in 15 minutes.\s*</p>', html), html
    assert 'id="login-form"' in html  # the admin's page
    assert not logged_in(client)


def test_failures_on_either_login_page_count_together(staff):
    fail(3, username="sam-staff", url=LOGIN)
    fail(2, username="sam-staff", url=ADMIN_LOGIN)
    response = log_in(Client(), "sam-staff", "sam-password-1")
    assert response.status_code == 429


# The client's address -------------------------------------------------------------------------

def test_a_forwarded_address_is_ignored_unless_the_proxy_is_trusted(owner, settings):
    for i in range(5):
        fail_headers = {"HTTP_X_FORWARDED_FOR": f"192.0.2.{i + 1}"}
        log_in(Client(), f"user{i}", "wrong", address="127.0.0.1", **fail_headers)
    # Every failure counted against the one real address: it is locked, whatever is forwarded.
    response = log_in(Client(), "alice", "alice-password-1", address="127.0.0.1",
                      HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert response.status_code == 429

    settings.ZOORANK_TRUSTED_PROXIES = ["127.0.0.1"]
    client = Client()
    response = log_in(client, "alice", "alice-password-1", address="127.0.0.1",
                      HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert response.status_code == 302 and logged_in(client)


def test_the_client_address_is_the_nearest_untrusted_hop(rf, settings):
    from config.login_throttling import client_address

    def address(remote, forwarded=None):
        headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
        return client_address(rf.get("/", REMOTE_ADDR=remote, **headers))

    assert address("10.0.0.5", "1.2.3.4") == "10.0.0.5"  # nobody trusted
    settings.ZOORANK_TRUSTED_PROXIES = ["10.0.0.0/8", "::1"]
    assert address("10.0.0.5", "1.2.3.4") == "1.2.3.4"
    # A client's own X-Forwarded-For is kept on the left: it is not believed.
    assert address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9") == "1.2.3.4"
    assert address("::1", "2001:db8::7") == "2001:db8::7"
    assert address("10.0.0.5", "not-an-address, 10.0.0.9") == "10.0.0.9"
    assert address("10.0.0.5") == "10.0.0.5"
    assert address("8.8.8.8", "1.2.3.4") == "8.8.8.8"  # not from the proxy
    assert address("::ffff:1.2.3.4") == "1.2.3.4"


# API tokens -----------------------------------------------------------------------------------

def test_wrong_tokens_lock_the_address_with_429_and_retry_after(owner, settings):
    settings.ZOORANK_TOKEN_FAILURES = 3
    key = Token.objects.create(user=owner).key
    wrong = APIClient(HTTP_AUTHORIZATION="Token " + "0" * 40, REMOTE_ADDR=ATTACKER)
    anonymous = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        assert wrong.get("/api/").status_code == 401
        assert anonymous.get("/api/").status_code == 401  # no token: not counted
    response = wrong.get("/api/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    assert "Try again in" in response.json()["detail"]
    # The right key from that address is refused too: it must not tell a guesser it was right.
    right = APIClient(HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=ATTACKER)
    assert right.get("/api/").status_code == 429
    elsewhere = APIClient(HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=ELSEWHERE)
    assert elsewhere.get("/api/").status_code == 200


# A new password revokes the API token ---------------------------------------------------------

def api_status(key: str) -> int:
    return APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/").status_code


def assert_rotated(user, old: str) -> None:
    assert api_status(old) == 401
    new = Token.objects.get(user=user).key
    assert new != old and api_status(new) == 200


def test_the_password_change_page_rotates_the_api_token(owner):
    old = Token.objects.create(user=owner).key
    client = Client()
    assert log_in(client, "alice", "alice-password-1").status_code == 302
    assert api_status(old) == 200  # logging in (last_login saved) keeps it
    response = client.post("/accounts/password_change/", {
        "old_password": "alice-password-1", "new_password1": "a-new-Passw0rd-9",
        "new_password2": "a-new-Passw0rd-9"})
    assert response.status_code == 302, response.content[:500]
    assert_rotated(owner, old)


def test_the_admins_password_change_rotates_the_users_token(owner, staff):
    old = Token.objects.create(user=owner).key
    client = Client()
    client.force_login(staff)
    response = client.post(f"/admin/auth/user/{owner.pk}/password/", {
        "password1": "a-new-Passw0rd-9", "password2": "a-new-Passw0rd-9",
        "usable_password": "true"})
    assert response.status_code == 302, response.content[:500]
    assert_rotated(owner, old)


def test_set_password_rotates_the_token_and_a_rehash_at_login_does_not(owner, outsider,
                                                                        settings):
    old = Token.objects.create(user=owner).key
    # Django re-hashes a password for a stronger hasher when it is checked: the same password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.ScryptPasswordHasher",
                                 "django.contrib.auth.hashers.MD5PasswordHasher"]
    assert log_in(Client(), "alice", "alice-password-1").status_code == 302
    owner.refresh_from_db()
    assert owner.password.startswith("scrypt$")
    assert api_status(old) == 200

    owner.set_password("another-password-2")
    owner.save()
    assert_rotated(owner, old)
    # A user without a token is not given one.
    outsider.set_password("another-password-3")
    outsider.save()
    assert not Token.objects.filter(user=outsider).exists()


def test_making_the_password_unusable_rotates_the_token(owner):
    old = Token.objects.create(user=owner).key
    owner.save()  # an ordinary save keeps it
    assert api_status(old) == 200
    owner.set_unusable_password()
    owner.save()
    assert_rotated(owner, old)
