"""Production settings: Django's deployment checklist passes with no warning, and the
responses carry HSTS, secure cookies and the https redirect. Each run is a fresh process
with the production environment (config.settings, not the test settings)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZOORANK_", "DJANGO_")) and k not in (
               "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "zoorank.example.org",
        "ZOORANK_HTTPS": "1",
        "ZOORANK_VAR_DIR": str(tmp_path / "var"),
    })
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def check_deploy(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                           "--fail-level", "WARNING"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_deployment_checklist_passes_in_production(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_https_the_checklist_fails(tmp_path):
    """The check above can fail: without ZOORANK_HTTPS it warns about each protection."""
    result = check_deploy(production_env(tmp_path, ZOORANK_HTTPS=None))
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, result.stderr


def test_debug_or_a_weak_key_fails_the_checklist(tmp_path):
    assert "security.W018" in check_deploy(production_env(tmp_path, DEBUG="1")).stderr
    assert "security.W009" in check_deploy(production_env(tmp_path, SECRET_KEY="short")).stderr


RESPONSES = r"""
import json
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="zoorank.example.org")
http = client.get("/accounts/login/")
https = client.get("/accounts/login/", secure=True)
print(json.dumps({
    "http": [http.status_code, http.get("Location")],
    "https": [https.status_code, dict(https.headers)],
    "cookies": {name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"])}
                for name, c in https.cookies.items()},
}))
"""


@pytest.mark.parametrize("proxy", [False, True])
def test_production_responses_redirect_to_https_and_carry_hsts(tmp_path, proxy):
    env = production_env(tmp_path)
    script = RESPONSES
    if proxy:  # TLS ends at a proxy that says so in X-Forwarded-Proto
        env["ZOORANK_TRUST_X_FORWARDED_PROTO"] = "1"
        script = script.replace('secure=True)', 'HTTP_X_FORWARDED_PROTO="https")')
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["http"] == [301, "https://zoorank.example.org/accounts/login/"]
    status, headers = seen["https"]
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "'nonce-" in headers["Content-Security-Policy"]
    assert seen["cookies"]["csrftoken"]["secure"]
