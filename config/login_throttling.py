"""Slow guessing down: failed logins and failed API tokens are counted, and beyond a limit
the client waits, told for how long.

Logins on both login pages go through django-axes (the login throttling block of
config/settings.py): each failure is a row in the database, and a username or an address
with ``ZOORANK_LOGIN_FAILURES`` recent failures is refused until the oldest of them that
counts is ``ZOORANK_LOGIN_COOLOFF_MINUTES`` old. This module gives axes the client's
address, its limits read from the settings on each request, and the page a locked-out
person sees: the login page they used, saying when to try again, answered 429.

Wrong API tokens are counted here, per address, for the same minutes from its first wrong
token, in the ``limits`` cache (Redis when configured, so every host shares the counts).
"""

import ipaddress
import logging
import math
import time
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import caches
from django.template.response import TemplateResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

log = logging.getLogger(__name__)

LOGIN_TEMPLATE = "registration/login.html"  # shows ``lockout`` above its form
LIMITS_CACHE = "limits"


# The client's address ----------------------------------------------------------------------

def client_address(request) -> str | None:
    """REMOTE_ADDR; when that is a trusted proxy (``ZOORANK_TRUSTED_PROXIES``), the nearest
    address in X-Forwarded-For that is not one. Each proxy appends the address it was sent
    from, so only the part left of the trusted proxies' entries can be forged."""
    trusted = [ipaddress.ip_network(p, strict=False) for p in settings.ZOORANK_TRUSTED_PROXIES]
    address = _parse(request.META.get("REMOTE_ADDR", ""))
    if address is None or not _among(address, trusted):
        return str(address) if address else None
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        forwarded = _parse(hop)
        if forwarded is None:
            break  # not written by a proxy of ours: believe nothing further left
        address = forwarded
        if not _among(address, trusted):
            break
    return str(address)


def _parse(text: str):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _among(address, networks) -> bool:
    return any(address in network for network in networks)


# Logins (django-axes) ----------------------------------------------------------------------

def failure_limit(request=None, credentials=None) -> int:
    return settings.ZOORANK_LOGIN_FAILURES


def cool_off(request=None) -> timedelta:
    return timedelta(minutes=settings.ZOORANK_LOGIN_COOLOFF_MINUTES)


def lockout_ends(request, credentials=None) -> datetime:
    """When the failures that lock this login out stop counting: for each locked key (the
    username, the address), the time of the failure that reached the limit, counting back
    from the newest, plus the cool-off."""
    from axes.helpers import get_client_parameters, get_client_username
    from axes.models import AccessAttempt

    now, window = timezone.now(), cool_off(request)
    limit = failure_limit(request, credentials)
    ends = None
    keys = get_client_parameters(get_client_username(request, credentials),
                                 request.axes_ip_address, request.axes_user_agent, request,
                                 credentials)
    for key in keys:
        attempts = (AccessAttempt.objects.filter(**key, attempt_time__gt=now - window)
                    .order_by("-attempt_time").values_list("attempt_time", "failures_since_start"))
        counted = 0
        for attempt_time, failures in attempts:
            counted += failures
            if counted >= limit:
                key_ends = attempt_time + window
                ends = key_ends if ends is None else max(ends, key_ends)
                break
    return ends or now + window


def lockout_message(wait_seconds: float) -> str:
    minutes = max(1, math.ceil(wait_seconds / 60))
    return (f"Too many failed login attempts. Try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}.")


def lockout_response(request, original_response=None, credentials=None):
    """The login page the person used (this site's or the admin's), answered 429 with a
    Retry-After: its form keeps the username, and says when to try again instead of
    "wrong password" (the password may have been right)."""
    wait = max(0.0, (lockout_ends(request, credentials) - timezone.now()).total_seconds())
    message = lockout_message(wait)
    context = dict(getattr(original_response, "context_data", None) or {})
    template = getattr(original_response, "template_name", None)
    form = context.get("form")
    if not template or not isinstance(form, forms.BaseForm) or not form.is_bound:
        template, form = LOGIN_TEMPLATE, AuthenticationForm(request)
        context = {"form": form, "next": request.POST.get("next", "")}
    else:
        form.errors.clear()  # already cleaned by the view: nothing is authenticated again
        templates = [template] if isinstance(template, str) else list(template)
        if LOGIN_TEMPLATE not in templates:
            form.add_error(None, message)  # the admin's page shows the form's errors
    context["lockout"] = message
    response = TemplateResponse(request, template, context, status=429)
    response["Retry-After"] = str(math.ceil(wait))
    return response.render()


# API tokens --------------------------------------------------------------------------------

class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, counting the wrong keys each address sends.

    Once an address has sent ``ZOORANK_TOKEN_FAILURES`` wrong keys within a window of
    ``ZOORANK_LOGIN_COOLOFF_MINUTES``, every token it sends, right or wrong, is answered 429
    with a Retry-After until the window ends: a right key must not tell a guesser it was
    right. Requests without a token are not counted. When the cache cannot be reached the
    key is checked as usual: a count must not stop the API.
    """

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None
        address = client_address(request)
        wait = _token_lock_wait(address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            _count_token_failure(address)
            raise


def _counts():
    return caches[LIMITS_CACHE if LIMITS_CACHE in settings.CACHES else "default"]


def _window_seconds() -> float:
    return settings.ZOORANK_LOGIN_COOLOFF_MINUTES * 60


# An address's window opens at its first wrong token and lasts the cool-off; its count is
# kept under a key named after the window's start, so a count never outlives its window.
def _since_key(address: str) -> str:
    return f"token-failures-since:{address}"


def _count_key(address: str, since: float) -> str:
    return f"token-failures:{address}:{since:.6f}"


def _token_lock_wait(address: str | None) -> float | None:
    """Seconds until this address may send tokens again; None when it may now."""
    if address is None:
        return None
    try:
        cache = _counts()
        since = cache.get(_since_key(address))
        failures = cache.get(_count_key(address, since), 0) if since is not None else 0
    except Exception:
        log.exception("the token failure count could not be read; checking the key as usual")
        return None
    if failures < settings.ZOORANK_TOKEN_FAILURES:
        return None
    left = since + _window_seconds() - time.time()
    return left if left > 0 else None


def _count_token_failure(address: str | None) -> None:
    if address is None:
        return
    now, length = time.time(), _window_seconds()
    try:
        cache = _counts()
        cache.add(_since_key(address), now, math.ceil(length))
        since = cache.get(_since_key(address), now)
        timeout = max(1, math.ceil(since + length - now))
        key = _count_key(address, since)
        cache.add(key, 0, timeout)
        cache.incr(key)
        cache.touch(key, timeout)  # a file cache's incr would set its default timeout
    except Exception:
        log.exception("a wrong token could not be counted")
