"""Serving: compressed, cache-busted static files; the favicon; the error pages; plotly loaded
without holding up the page."""

import brotli
import gzip
import re
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.template import engines
from django.test import override_settings
from django.urls import include, path

from tests.conftest import ROOT


ONE_YEAR = 365 * 24 * 3600
PLOTLY = "plotly/plotly.min.js"
COLLECTED = {
    "STORAGES": {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                 "staticfiles": {"BACKEND": "config.storage.StaticStorage"}},
    # Collecting the admin's and the API docs' files too would only take longer.
    "STATICFILES_FINDERS": ["config.finders.PlotlyFinder",
                            "django.contrib.staticfiles.finders.FileSystemFinder"],
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """collectstatic with the production storage, into a folder of its own."""
    from django.core.management import call_command

    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root, **COLLECTED):
        call_command("collectstatic", "--noinput", verbosity=0)
    return root


@pytest.fixture
def production_static(collected):
    from django.test import Client

    with override_settings(STATIC_ROOT=collected, **COLLECTED):
        yield Client()  # a new client builds WhiteNoise on these settings


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("encoding, decompress", [("gzip", gzip.decompress),
                                                  ("br", brotli.decompress)])
def test_plotly_is_served_compressed_under_a_hashed_name_cached_for_a_year(
        production_static, encoding, decompress):
    import plotly
    from django.contrib.staticfiles.storage import staticfiles_storage

    url = staticfiles_storage.url(PLOTLY)
    assert re.fullmatch(r"/static/plotly/plotly\.min\.[0-9a-f]{12}\.js", url), url
    response = production_static.get(url, HTTP_ACCEPT_ENCODING=f"{encoding}, identity")
    assert response.status_code == 200
    assert response["Content-Encoding"] == encoding
    assert response["Content-Type"].startswith("text/javascript")
    assert "Accept-Encoding" in response["Vary"]
    cache = response["Cache-Control"]
    assert int(re.search(r"max-age=(\d+)", cache).group(1)) >= ONE_YEAR and "immutable" in cache
    original = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    body = _body(response)
    assert len(body) < len(original) / 3
    assert decompress(body) == original


def test_without_compression_support_plotly_is_served_plain(production_static):
    from django.contrib.staticfiles.storage import staticfiles_storage

    response = production_static.get(staticfiles_storage.url(PLOTLY))
    assert response.status_code == 200 and "Content-Encoding" not in response
    assert int(response["Content-Length"]) > 4_000_000


def test_pages_link_the_hashed_names(production_static, db):
    html = production_static.get("/accounts/login/").content.decode()
    assert re.search(r'href="/static/site/favicon\.[0-9a-f]{12}\.svg"', html), html[:800]
    # A file collectstatic has not seen is linked by its plain name, not an error page.
    assert 'href="/static/zoorank/zoorank.css"' in html


def test_without_collectstatic_pages_link_the_plain_names(tmp_path):
    from django.contrib.staticfiles.storage import staticfiles_storage

    with override_settings(STATIC_ROOT=tmp_path, **COLLECTED):
        assert staticfiles_storage.url(PLOTLY) == "/static/plotly/plotly.min.js"


def test_plotly_is_the_only_file_taken_from_the_plotly_package():
    from config.finders import PlotlyFinder

    finder = PlotlyFinder()
    assert [name for name, _ in finder.list([])] == ["plotly.min.js"]
    assert finder.find(PLOTLY).endswith("package_data/plotly.min.js")
    assert finder.find("plotly/widgetbundle.js") is None
    assert finder.find(PLOTLY, find_all=True) == [finder.find(PLOTLY)]


# The favicon.

def test_the_favicon_is_linked_and_favicon_ico_is_there(client, db):
    from django.contrib.staticfiles import finders

    html = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/site/favicon.svg" type="image/svg+xml">' in html
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/site/favicon.ico"
    ico = Path(finders.find("site/favicon.ico")).read_bytes()
    assert ico[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert Path(finders.find("site/favicon.svg")).read_text().startswith("<svg")


# Error pages.

def test_a_missing_page_is_styled_and_says_so(client, owner, db):
    response = client.get("/no/such/<page>/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "zoorank.css" in html
    assert "/no/such/%3Cpage%3E/" in html and "<page>" not in html
    client.force_login(owner)
    html = client.get("/evaluations/999999/").content.decode()
    assert "Page not found" in html and "Log out alice" in html


def test_the_server_error_page_needs_no_database_and_no_context(rf):
    # No django_db mark: any query would fail this test.
    from config.errors import server_error

    response = server_error(rf.get("/datasets/1/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "<h1>Server error</h1>" in html and "{%" not in html and "{{" not in html
    api = server_error(rf.get("/api/evaluations/1/"))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"


def _broken(request):
    raise RuntimeError("broken on purpose")


def _figure_page(request):
    import plotly.graph_objects as go

    from config.middleware import nonce_scripts

    figure = nonce_scripts(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).to_html(
        include_plotlyjs=False, full_html=False, div_id="chart-test",
        config={"displaylogo": False, "responsive": True}))
    template = engines["django"].from_string(FIGURE_PAGE)
    defer = " defer" if request.GET.get("defer") else ""
    return HttpResponse(template.render({"figure": figure, "defer": defer}, request))


# This module is also the URLconf of the tests below: two pages of its own, then the app's.
urlpatterns = [path("broken/", _broken), path("figure/", _figure_page),
               path("", include("config.urls"))]
handler500 = "config.errors.server_error"


@override_settings(ROOT_URLCONF=__name__)
def test_an_exception_in_a_page_shows_the_server_error_page(client):
    from django.test import Client

    response = Client(raise_request_exception=False).get("/broken/")
    assert response.status_code == 500
    assert "<h1>Server error</h1>" in response.content.decode()


# Plotly loaded with defer: figures wait for it instead of failing.

FIGURE_PAGE = """{% extends "base.html" %}{% load static %}
{% block head %}<script nonce="{{ request.csp_nonce }}">window.errors = [];
  window.addEventListener("error", function (e) { window.errors.push(e.message); });</script>
<script{{ defer }} src="{% static 'plotly/plotly.min.js' %}"></script>{% endblock %}
{% block content %}<p id="first">Before the figure.</p>{{ figure|safe }}{% endblock %}
{% block scripts %}<script nonce="{{ request.csp_nonce }}">document.addEventListener("DOMContentLoaded", function () {
  // A page's own DOMContentLoaded handlers find the figure drawn, or being drawn.
  window.figureEvents = typeof document.getElementById("chart-test").on;
});</script>{% endblock %}"""


def test_base_html_defines_the_plotly_stand_in_before_any_page_script():
    base = (ROOT / "templates" / "base.html").read_text()
    assert base.index("window.Plotly = standIn") < base.index("{% block head %}")
    assert base.index("DOMContentLoaded") < base.index("{% block head %}")


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs chromium")
@pytest.mark.parametrize("defer", ["1", ""])
def test_a_figure_draws_with_plotly_deferred_or_not(browser, live_server, settings, defer):
    from tests.test_browser import wait_until

    settings.ROOT_URLCONF = __name__
    browser.get(f"{live_server.url}/figure/?defer={defer}")
    wait_until(browser, lambda d: d.find_elements("css selector", "#chart-test .main-svg"),
               30, "the figure")
    assert browser.execute_script("return typeof Plotly.react") == "function"
    assert browser.execute_script("return window.errors") == []
    assert browser.execute_script("return window.figureEvents") == "function"
    deferred = browser.execute_script(
        "return document.querySelector('script[src*=plotly]').defer")
    assert deferred == bool(defer)


@pytest.mark.parametrize("url", ["/api/checkpoints/?search=a%00b", "/zoo/?q=%00",
                                 "/api/evaluations/?page=1%00"])
def test_a_nul_character_in_the_query_is_refused_with_a_reason(client, owner, url):
    """PostgreSQL cannot take NUL in a string: it would have been a server error."""
    client.force_login(owner)
    response = client.get(url)
    assert response.status_code == 400
    assert "NUL characters" in response.content.decode()
    if url.startswith("/api/"):
        assert response.json() == {"detail": "NUL characters (\\x00) are not allowed in the "
                                              "query string."}
