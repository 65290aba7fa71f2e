"""One limit on submissions per user, the same on the pages and the API.

Every route that stores an upload or puts work on the queue (a dataset, an evaluation, a
retry, a re-run, a ground truth, a transfer; through a page or through ``/api/``) counts
against the user's ``ZOORANK_SUBMIT_RATE``, all such routes together in one count. Reads,
cancelling and deleting are never counted.

The counts live in the ``limits`` cache (config/settings.py): Redis when ``REDIS_URL`` is
set, so every process and host shares them; otherwise files under the var folder, shared by
every process of this host. When that cache cannot be reached the request goes through: a
limit on work must not stop the work.
"""

import logging
import math
from types import SimpleNamespace

from django.conf import settings
from django.core.cache import caches
from django.utils.connection import ConnectionProxy
from rest_framework.throttling import ScopedRateThrottle

log = logging.getLogger(__name__)

SUBMIT_SCOPE = "submit"
LIMITS_CACHE = "limits"


class SubmissionThrottle(ScopedRateThrottle):
    """At most ``ZOORANK_SUBMIT_RATE`` POSTs per user to the views with
    ``throttle_scope = "submit"`` and to the submitting pages (:func:`page_refusal`).

    The rate is read from the settings on each request (DRF's ScopedRateThrottle reads its
    rates once, at import).
    """

    cache = ConnectionProxy(caches, LIMITS_CACHE)

    def allow_request(self, request, view):
        if request.method != "POST":
            return True
        try:
            return super().allow_request(request, view)
        except Exception:
            log.exception("the submission throttle could not use its cache; letting it through")
            return True

    def get_rate(self):
        if self.scope == SUBMIT_SCOPE:
            return settings.ZOORANK_SUBMIT_RATE
        return super().get_rate()


def page_refusal(request) -> tuple[str, int] | None:
    """For a page's POST that submits work: None when it may go on (and it is counted), else
    the refusal's message and the seconds to wait, the API's own words."""
    throttle = SubmissionThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope=SUBMIT_SCOPE)):
        return None
    wait = throttle.wait()
    return submissions_refused(wait), math.ceil(wait) if wait is not None else 60


def submissions_refused(wait) -> str:
    """"Too many submissions: at most 60 per hour, pages and API together. Try again in 12
    minutes."."""
    when = f"Try again in {duration(wait)}." if wait is not None else "Try again later."
    count, period = settings.ZOORANK_SUBMIT_RATE.split("/")
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[0]]
    return f"Too many submissions: at most {count} per {unit}, pages and API together. {when}"


def duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = math.ceil(seconds / 3600)
    return f"{hours} hours"
