"""Requests no view should see, and the Content-Security-Policy of every response."""

import contextlib
import contextvars
import re
import secrets

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse

NUL_MESSAGE = "NUL characters (\\x00) are not allowed in the query string."


class RejectNulCharacters:
    """400 for a query string holding a NUL character.

    PostgreSQL refuses NUL in any string parameter, so a search for "a\\x00b" would reach
    the database and fail there as a server error; SQLite would take it. Refusing it here
    gives one clear answer on every page and API view, on every database.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or any("\x00" in v for v in values)
               for key, values in request.GET.lists()):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": NUL_MESSAGE}, status=400)
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain")
        return self.get_response(request)


class LimitAnonymousBodies:
    """413 for a request body over ``ZOORANK_ANONYMOUS_BODY_BYTES`` from someone who is not
    logged in, before a byte of it is read; 411 for a body whose length is not said
    (chunked). The login pages are no exception: a login form is far smaller.

    Django reads a POST's body as soon as anything looks at ``request.POST``, and the CSRF
    check does, for the form's token: a multipart body is streamed through the upload
    handlers into a temporary file first. A client with nothing but a CSRF cookie could make
    the server take in and write gigabytes before its 403. Uploads come from a session or an
    API token, and keep their own limits. Placed after the authentication middleware, which
    reads no body: it needs the session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        size = _declared_body_size(request.META)
        limit = settings.ZOORANK_ANONYMOUS_BODY_BYTES
        if (size is None or size > limit) and not _may_send_a_body(request):
            if size is None:
                return _refusal(request, 411, "A request body must give its length "
                                              "(Content-Length) unless you are logged in.")
            return _refusal(request, 413, f"Request body too large: at most "
                                          f"{_size(limit)} without logging in.")
        return self.get_response(request)


def _declared_body_size(meta) -> int | None:
    """The body's size as the client declares it; None when one follows with no length."""
    length = meta.get("CONTENT_LENGTH")
    if length:
        try:
            return int(length)
        except ValueError:
            pass  # Django reads no body then
    return None if meta.get("HTTP_TRANSFER_ENCODING") else 0


def _may_send_a_body(request) -> bool:
    """Logged in, or an API request with credentials: the API checks those (counting the
    wrong tokens each address sends) before it reads the body, so it is left to judge them.
    Checking a token here would let anyone try keys without being counted."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    return request.path.startswith("/api/") and bool(request.META.get("HTTP_AUTHORIZATION"))


def _refusal(request, status: int, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain")


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n % (1 << 20) == 0 else f"{n:,} bytes"


# Content-Security-Policy ---------------------------------------------------------------------

_nonce: contextvars.ContextVar[str | None] = contextvars.ContextVar("csp_nonce", default=None)
_SCRIPT_TAG = re.compile(r"<script(?=[\s>])")


def current_csp_nonce() -> str | None:
    """The nonce of the request being answered (None outside a request)."""
    return _nonce.get()


@contextlib.contextmanager
def no_nonce():
    """Inside it, :func:`nonce_scripts` leaves scripts bare: for fragments that are cached
    and given each later request's nonce when they are used."""
    token = _nonce.set(None)
    try:
        yield
    finally:
        _nonce.reset(token)


def nonce_scripts(html: str) -> str:
    """``html`` made by our own code (a plotly figure's fragment, whose data is JSON-escaped)
    with this request's nonce on each of its <script> tags. Never for text a user wrote."""
    nonce = _nonce.get()
    if not nonce:
        return html
    return _SCRIPT_TAG.sub(f'<script nonce="{nonce}"', html)


def csp_header(nonce: str) -> str:
    """settings.ZOORANK_CSP as a header value; "{nonce}" stands for this request's nonce."""
    return "; ".join(" ".join([directive, *sources]).replace("{nonce}", nonce)
                     for directive, sources in settings.ZOORANK_CSP.items())


class ContentSecurityPolicy:
    """A Content-Security-Policy header on every response, with a fresh nonce per request.

    Templates mark their inline scripts ``nonce="{{ request.csp_nonce }}"``; a script
    injected into a page has no nonce and does not run. A view that sets its own header
    keeps it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        nonce = secrets.token_urlsafe(18)
        request.csp_nonce = nonce
        token = _nonce.set(nonce)
        try:
            response = self.get_response(request)
        finally:
            _nonce.reset(token)
        if settings.ZOORANK_CSP and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = csp_header(nonce)
        return response
