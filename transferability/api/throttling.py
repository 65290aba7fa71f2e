"""Submissions per user: POST of datasets, evaluations, retries, ground truth, transfers."""

import logging

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

log = logging.getLogger(__name__)

SUBMIT_SCOPE = "submit"


class SubmissionThrottle(ScopedRateThrottle):
    """At most ``ZOORANK_SUBMIT_RATE`` POSTs per user to the views with
    ``throttle_scope = "submit"``, all such views together; reads are never throttled.

    The rate is read from the settings on each request (DRF's ScopedRateThrottle reads its
    rates once, at import). The counts live in Django's cache, Redis when REDIS_URL is set;
    when the cache cannot be reached the request goes through: a limit on work must not stop
    the work.
    """

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
