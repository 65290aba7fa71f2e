"""One error format for the whole API: a JSON object with a ``detail`` string.

DRF already answers most errors so (401, 403, 404, 405, 415, 429: ``{"detail": ...}``).
A validation error keeps DRF's messages per field (``{"name": ["This field is required."]}``)
and gains a ``detail`` that sums them up; a 429 says when to try again and adds
``retry_after`` (seconds, as in the Retry-After header). Errors outside DRF's views (an
unknown /api/ URL, a server error) answer the same shape (config/errors.py).
"""

import math

from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from .throttling import SUBMIT_SCOPE, duration, submissions_refused


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a server error: config.errors.server_error answers it
    data = response.data
    if isinstance(exc, exceptions.Throttled):
        data = {"detail": throttled_detail(exc.wait, context.get("view")),
                "retry_after": math.ceil(exc.wait) if exc.wait is not None else None}
    elif isinstance(data, list):  # ValidationError(["..."]) raised outside a serializer
        data = {"detail": _summary(data), "non_field_errors": data}
    elif isinstance(data, dict) and "detail" not in data:
        data = {"detail": _summary(data), **data}
    response.data = data
    return response


def _summary(errors) -> str:
    """The first message, with the field it is about: "file: No file was submitted."."""
    messages = list(_flatten(errors))
    if not messages:
        return "Invalid input."
    field, message = messages[0]
    first = f"{field}: {message}" if field and field != "non_field_errors" else str(message)
    more = len(messages) - 1
    return first + (f" (and {more} more)" if more else "")


def _flatten(errors, field=""):
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{field}.{key}" if field else str(key))
    elif isinstance(errors, list):
        for value in errors:
            yield from _flatten(value, field)
    else:
        yield field, errors


def throttled_detail(wait, view) -> str:
    if getattr(view, "throttle_scope", None) == SUBMIT_SCOPE:
        return submissions_refused(wait)
    when = f"Try again in {duration(wait)}." if wait is not None else "Try again later."
    return f"Too many requests. {when}"
