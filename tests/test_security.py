"""Who reaches what, route by route, and the protections every response carries.

The URL conf is walked and every route is requested as four people, built once per test:
``owner`` (alice, who owns a dataset, two evaluations, a transfer, a ground truth and an API
token), ``outsider`` (mallory, logged in, owns nothing), ``staff`` (a superuser: the admin is
theirs, alice's things are not) and ``anonymous``. ROUTES says what each person gets; a
route that ROUTES does not cover fails, so a new route cannot arrive without its check.
"""

import base64
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.builders import image_folder_zip
from transferability.complementarity import complementarity_report
from transferability.datasets import create_target_dataset
from transferability.models import (CheckpointResult, Evaluation, GroundTruth, MetricScore,
                                    Status, Transfer)
from workers import caches
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent

# What alice's things are called: none of it may reach anyone else.
SECRET_DATASET = "alice-private-orchids"
SECRET_CLASSES = {"secretdaisy": 3, "secretrose": 3}
SECRETS = (SECRET_DATASET, *SECRET_CLASSES)
NAMES = ["sec-alpha-net", "sec-beta-net"]
CORRECT = np.array([[1, 1, 1, 0, 0, 1], [0, 1, 1, 1, 1, 0]], dtype=bool)


# The personas -------------------------------------------------------------------------------

@dataclass
class World:
    owner: object
    outsider: object
    staff: object
    dataset: object = None
    evaluation: object = None
    other_evaluation: object = None
    result: object = None
    checkpoints: list = field(default_factory=list)
    transfer: object = None
    truth: object = None
    token: object = None
    group: object = None

    def client(self, persona: str) -> Client:
        client = Client()
        if persona != "anonymous":
            client.force_login(getattr(self, persona))
        return client

    def admin_object(self, app_label: str, model_name: str):
        """An object of the admin's model for its change, delete and history pages."""
        model = apps.get_model(app_label, model_name)
        if model_name == "tokenproxy":  # the admin names a token by its user
            return model.objects.get(user=self.owner)
        chosen = {
            "targetdataset": self.dataset, "evaluation": self.evaluation,
            "groundtruth": self.truth, "transfer": self.transfer,
            "user": self.owner, "group": self.group, "checkpoint": self.checkpoints[0],
        }.get(model_name) or model.objects.order_by("pk").first()
        assert chosen is not None, f"no {app_label}.{model_name} to open in the admin"
        return chosen


@pytest.fixture
def world(owner, outsider, django_user_model, settings, tmp_path, sent_tasks) -> World:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
    staff = django_user_model.objects.create_superuser("sam-staff", "sam@example.org",
                                                       "sam-password-1")
    w = World(owner=owner, outsider=outsider, staff=staff)
    archive = image_folder_zip(tmp_path / "orchids.zip", SECRET_CLASSES)
    w.dataset = create_target_dataset(owner, SECRET_DATASET, archive)
    w.checkpoints = [Checkpoint.objects.create(
        name=name, architecture="resnet18", family="resnet", input_size=[3, 32, 32],
        mean=[0.5] * 3, std=[0.5] * 3, feature_dim=4, param_count=1000 * (i + 1))
        for i, name in enumerate(NAMES)]
    labels = np.repeat(list(SECRET_CLASSES), 3).astype(object)
    rng = np.random.default_rng(0)

    def evaluation():
        e = Evaluation.objects.create(owner=owner, dataset=w.dataset, status=Status.DONE,
                                      metrics=["tmi", "logme"])
        for i, checkpoint in enumerate(w.checkpoints):
            key = f"sec{i}-{e.pk}"
            result = CheckpointResult.objects.create(
                evaluation=e, checkpoint=checkpoint, status=Status.DONE, feature_key=key,
                feature_dim=4, images_done=6, images_total=6)
            for metric, value in (("tmi", 1.0 + i), ("logme", 0.5 - i)):
                MetricScore.objects.create(result=result, metric=metric, value=value)
            caches.features.save(key, "pre_logits", rng.normal(size=(6, 4)).astype(np.float32))
            caches.features.save(key, "probe_correct", CORRECT[i])
        e.complementarity = complementarity_report(CORRECT, labels, NAMES)
        e.save()
        return e

    w.evaluation = evaluation()
    w.other_evaluation = evaluation()
    w.result = w.evaluation.results.order_by("pk").first()
    w.transfer = Transfer.objects.create(owner=owner, evaluation=w.evaluation,
                                         teacher=w.checkpoints[0], student=w.checkpoints[1],
                                         status=Status.DONE)
    w.truth = GroundTruth.objects.create(evaluation=w.other_evaluation, status=Status.DONE)
    w.token = Token.objects.create(user=owner)
    w.group = Group.objects.create(name="curators")
    return w


# The table ----------------------------------------------------------------------------------
# kind:
#   page      alice's thing: anonymous to the login page; mallory and staff 404
#   mine      a page of whoever asks (their own list, the shared zoo): anonymous to the login
#             page; everyone logged in gets it, without alice's things
#   api       alice's thing in the API: anonymous 401 JSON; mallory and staff 404
#   api-mine  the API's view of whoever asks: anonymous 401 JSON; others as `others` says
#   public    anyone: the login page, the favicon, logging out, the API's schema and docs
#   admin     staff only: everyone else to the admin's login page
# methods: method -> the statuses alice (staff, for admin) may get. others: method ->
# statuses for mallory and staff where they differ (api-mine with alice's ids in the body).

Params = Callable[[World], dict]


@dataclass(frozen=True)
class Rule:
    kind: str
    methods: dict
    params: Params | None = None
    query: Callable[[World], str] | None = None
    body: Callable[[World], dict] | None = None
    others: dict | None = None


def ds(w):
    return {"pk": w.dataset.pk}


def ev(w):
    return {"pk": w.evaluation.pk}


def compare_query(w):
    return f"ids={w.evaluation.pk},{w.other_evaluation.pk}"


def evaluate_form(w):
    return {"checkpoints": [c.pk for c in w.checkpoints], "metrics": ["tmi"],
            "correctness_source": "target"}


def evaluation_request(w):
    return {"dataset": w.dataset.pk, "checkpoints": [c.pk for c in w.checkpoints],
            "metrics": ["tmi"]}


def transfer_request(w):
    return {"evaluation": w.evaluation.pk, "teacher": w.checkpoints[0].pk,
            "student": w.checkpoints[1].pk}


ROUTES: dict[str, Rule] = {
    # Pages
    "dashboard": Rule("mine", {"GET": {200}}),
    "dataset-upload": Rule("mine", {"GET": {200}}),
    "predictors": Rule("mine", {"GET": {200}}),
    "dataset-detail": Rule("page", {"GET": {200}, "POST": {302}}, ds, body=evaluate_form),
    "dataset-delete": Rule("page", {"POST": {302}}, ds),
    "dataset-image": Rule("page", {"GET": {200}}, lambda w: {"pk": w.dataset.pk, "index": 0}),
    "evaluation-compare": Rule("page", {"GET": {200}}, query=compare_query),
    "evaluation-detail": Rule("page", {"GET": {200}}, ev),
    "evaluation-retry": Rule("page", {"POST": {302}}, ev),
    "evaluation-cancel": Rule("page", {"POST": {302}}, ev),
    "evaluation-rerun": Rule("page", {"POST": {302}}, ev),
    "evaluation-delete": Rule("page", {"POST": {302}}, ev),
    "evaluation-truth": Rule("page", {"POST": {302}}, ev, body=lambda w: {"mode": "probe"}),
    "evaluation-transfer": Rule("page", {"POST": {302}}, ev,
                                body=lambda w: {"teacher": NAMES[0], "student": NAMES[1]}),
    "evaluation-export": Rule("page", {"GET": {200}}, lambda w: {"pk": w.evaluation.pk,
                                                                   "fmt": "json"}),
    "evaluation-pair": Rule("page", {"GET": {200}}, lambda w: {
        "pk": w.evaluation.pk, "a": w.checkpoints[0].pk, "b": w.checkpoints[1].pk}),
    "result-features": Rule("page", {"GET": {200}}, lambda w: {"pk": w.evaluation.pk,
                                                                 "result_id": w.result.pk}),
    "checkpoint-list": Rule("mine", {"GET": {200}}),
    "checkpoint-detail": Rule("mine", {"GET": {200}}, lambda w: {"pk": w.checkpoints[0].pk}),
    # Accounts
    "login": Rule("public", {"GET": {200}}),
    "logout": Rule("public", {"POST": {302}}),
    "api-token": Rule("mine", {"GET": {200}, "POST": {302}}),
    "password_change": Rule("mine", {"GET": {200}}),
    "password_change_done": Rule("mine", {"GET": {200}}),
    "favicon.ico": Rule("public", {"GET": {302}}),
    # The API. Its schema and docs are readable without logging in (README): they describe
    # the endpoints and hold nobody's data.
    "api-root": Rule("api-mine", {"GET": {200}}),
    "api-schema": Rule("public", {"GET": {200}}),
    "api-docs": Rule("public", {"GET": {200}}),
    "api-dataset-list": Rule("api-mine", {"GET": {200}}),
    "api-dataset-detail": Rule("api", {"GET": {200}, "DELETE": {204}}, ds),
    "api-evaluation-list": Rule("api-mine", {"GET": {200}, "POST": {202}}, body=evaluation_request,
                                others={"POST": {400}}),
    "api-evaluation-detail": Rule("api", {"GET": {200}, "DELETE": {204}}, ev),
    "api-evaluation-cancel": Rule("api", {"POST": {409}}, ev),
    "api-evaluation-retry": Rule("api", {"POST": {409}}, ev),
    "api-evaluation-truth": Rule("api", {"POST": {202}}, ev, body=lambda w: {"mode": "probe"}),
    "api-transfer-list": Rule("api-mine", {"GET": {200}, "POST": {202}}, body=transfer_request,
                              others={"POST": {400}}),
    "api-transfer-detail": Rule("api", {"GET": {200}}, lambda w: {"pk": w.transfer.pk}),
    "api-transfer-cancel": Rule("api", {"POST": {409}}, lambda w: {"pk": w.transfer.pk}),
    "transfer-detail": Rule("page", {"GET": {200}}, lambda w: {"pk": w.transfer.pk}),
    "transfer-cancel": Rule("page", {"POST": {302}}, lambda w: {"pk": w.transfer.pk}),
    # Adding a checkpoint from the hub is for staff: alice and mallory are refused alike;
    # staff is told the hub cannot be reached (the suite runs offline).
    "api-checkpoint-list": Rule("api-mine", {"GET": {200}, "POST": {403}},
                                body=lambda w: {"hub": "hf-hub:acme/anything"},
                                others={"POST": {400, 403}}),
    # The shared zoo: every user sees its checkpoints (a distilled one only its owner).
    "api-checkpoint-detail": Rule("api-mine", {"GET": {200}},
                                  lambda w: {"pk": w.checkpoints[0].pk}),
    "api-metric-list": Rule("api-mine", {"GET": {200}}),
    # The admin: its own pages, then one set of pages per registered model (below).
    "admin:index": Rule("admin", {"GET": {200}}),
    "admin:login": Rule("public", {"GET": {200, 302}}),  # staff: already in, to the index
    "admin:logout": Rule("public", {"POST": {200, 302}}),  # non-staff: to /admin/, then login
    "admin:password_change": Rule("admin", {"GET": {200}}),
    "admin:password_change_done": Rule("admin", {"GET": {200}}),
    "admin:autocomplete": Rule("admin", {"GET": {200}}, query=lambda w: (
        "app_label=transferability&model_name=evaluation&field_name=dataset")),
    "admin:jsi18n": Rule("admin", {"GET": {200}}),
    "admin:zoo_checkpoint_from_hub": Rule("admin", {"GET": {200}}),
    "admin:view_on_site": Rule("admin", {"GET": {302}}, lambda w: {
        "content_type_id": ContentType.objects.get_for_model(w.dataset).pk,
        "object_id": w.dataset.pk}),
    "admin:app_list": Rule("admin", {"GET": {200}}, lambda w: {"app_label": "transferability"}),
    "admin:auth_user_password_change": Rule("admin", {"GET": {200}},
                                            lambda w: {"id": w.owner.pk}),
    "admin/(?P<url>.*)$": Rule("admin", {"GET": {404}}, lambda w: {"url": "no-such-page/"}),
}
# Every registered model's admin pages: the list, add, and an object's change, delete,
# history, and the bare object URL that redirects to its change page.
ADMIN_MODEL_ROUTE = re.compile(r"admin:(?P<app>[a-z_]+?)_(?P<model>[a-z]+)_(?P<action>"
                               r"changelist|add|change|delete|history)$")
ADMIN_OBJECT_REDIRECT = re.compile(r"admin/(?P<app>[a-z_]+)/(?P<model>[a-z]+)/"
                                   r"<path:object_id>/$")


def admin_model_rule(key: str) -> Rule | None:
    if match := ADMIN_MODEL_ROUTE.match(key):
        app, model, action = match.groups()
        if action == "changelist":
            return Rule("admin", {"GET": {200}})
        if action == "add":  # 403 where rows are made only through the app
            return Rule("admin", {"GET": {200 if admin_can_add(app, model) else 403}})
        return Rule("admin", {"GET": {200}}, lambda w: {
            "object_id": w.admin_object(app, model).pk})
    if match := ADMIN_OBJECT_REDIRECT.match(key):
        app, model = match.groups()
        return Rule("admin", {"GET": {302}}, lambda w: {
            "object_id": w.admin_object(app, model).pk})
    return None


def admin_can_add(app_label: str, model_name: str) -> bool:
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User(is_staff=True, is_superuser=True, is_active=True)
    return admin.site._registry[apps.get_model(app_label, model_name)].has_add_permission(
        request)


def rule_for(key: str) -> Rule | None:
    return ROUTES.get(key) or admin_model_rule(key)


# Walking the URL conf -----------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    key: str  # the namespaced name, or the full pattern of an unnamed route
    name: str | None
    pattern: str


def url_conf(resolver=None, prefix: str = "", namespace: str = ""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern).lstrip("^")
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}{entry.namespace}:"
            yield from url_conf(entry, pattern, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else None
            yield Route(name or pattern, name, pattern)


ALL_ROUTES = list(url_conf())


def route_url(route: Route, rule: Rule, w: World) -> str:
    kwargs = rule.params(w) if rule.params else {}
    if route.name:
        url = reverse(route.name, kwargs=kwargs)
    else:  # an unnamed route: its pattern with the parameters put in
        url = "/" + re.sub(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)\$?",
                           lambda m: str(kwargs[m.group(1) or m.group(2)]), route.pattern)
        url = url.rstrip("$")
    return f"{url}?{rule.query(w)}" if rule.query else url


def send(client: Client, method: str, url: str, body: dict | None, api: bool):
    if method == "GET":
        return client.get(url)
    if method == "DELETE":
        return client.delete(url)
    if api:
        return client.post(url, json.dumps(body or {}), content_type="application/json")
    return client.post(url, body or {})


def leaks(response) -> list[str]:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    text = content.decode("utf-8", "replace")
    return [secret for secret in SECRETS if secret in text]


def assert_protected_headers(response, where: str):
    assert response["X-Frame-Options"] == "DENY", where
    assert response["X-Content-Type-Options"] == "nosniff", where
    assert response["Referrer-Policy"] == "same-origin", where
    assert "nonce-" in response["Content-Security-Policy"], where


def test_every_route_of_the_url_conf_has_a_rule():
    missing = [r.key for r in ALL_ROUTES if rule_for(r.key) is None]
    assert not missing, f"routes without a security rule in tests/test_security.py: {missing}"
    stale = set(ROUTES) - {r.key for r in ALL_ROUTES}
    assert not stale, f"rules for routes that no longer exist: {sorted(stale)}"


def test_the_walk_finds_the_api_the_admin_and_the_pages():
    keys = {r.key for r in ALL_ROUTES}
    assert {"api-evaluation-detail", "admin:index", "evaluation-pair", "result-features",
            "admin:transferability_evaluation_change"} <= keys
    assert len(ALL_ROUTES) > 80


@pytest.mark.parametrize("route", ALL_ROUTES, ids=[r.key for r in ALL_ROUTES])
def test_each_route_answers_each_person_as_its_rule_says(route, world):
    rule = rule_for(route.key)
    assert rule is not None, f"{route.key} has no rule in ROUTES: add one"
    url = route_url(route, rule, world)
    api = rule.kind.startswith("api")
    body = rule.body(world) if rule.body else None
    login = f"{reverse('login')}?next="
    # Everyone else first, alice last: her DELETE and POST change things.
    for persona in ("anonymous", "outsider", "staff", "owner"):
        for method, owner_codes in rule.methods.items():
            where = f"{persona} {method} {url}"
            response = send(world.client(persona), method, url, body, api)
            code = response.status_code
            assert_protected_headers(response, where)
            if persona in ("outsider", "anonymous") or (persona == "staff"
                                                         and rule.kind != "admin"):
                assert not leaks(response), f"{where} shows alice's {leaks(response)}"
            if rule.kind == "admin":
                if persona == "staff":
                    assert code in owner_codes, f"{where}: {code}"
                else:
                    assert code == 302, f"{where}: {code}"
                    assert response["Location"].startswith(
                        f"{reverse('admin:login')}?next="), where
            elif rule.kind == "public":
                assert code in owner_codes, f"{where}: {code}"
            elif persona == "anonymous":
                if api:
                    assert code == 401, f"{where}: {code}"
                    assert response["Content-Type"] == "application/json", where
                    assert "detail" in response.json(), where
                else:
                    assert code == 302, f"{where}: {code}"
                    assert response["Location"].startswith(login), where
            elif persona == "owner":
                assert code in owner_codes, f"{where}: {code} {response.content[:300]!r}"
            elif rule.kind in ("page", "api"):
                assert code in (403, 404), f"{where}: {code}"
            else:  # mine, api-mine: their own view
                expected = (rule.others or {}).get(method, owner_codes)
                assert code in expected, f"{where}: {code} {response.content[:300]!r}"


def test_a_rule_that_is_not_kept_fails(world, monkeypatch):
    """The table catches a view that forgets its owner: the pair page opened to anyone."""
    from transferability import views

    real = views.get_object_or_404

    def any_owner(queryset, *args, **kwargs):
        kwargs.pop("owner", None)
        return real(queryset, *args, **kwargs)

    monkeypatch.setattr(views, "get_object_or_404", any_owner)
    route = next(r for r in ALL_ROUTES if r.key == "evaluation-pair")
    with pytest.raises(AssertionError, match="outsider GET"):
        test_each_route_answers_each_person_as_its_rule_says(route, world)


def test_every_api_route_answers_a_wrong_or_missing_token_with_401_json(world):
    for route in ALL_ROUTES:
        rule = rule_for(route.key)
        if not rule.kind.startswith("api"):
            continue
        url = route_url(route, rule, world)
        for header in ({}, {"HTTP_AUTHORIZATION": "Token " + "0" * 40}):
            for method in rule.methods:
                response = send(Client(**header), method, url, None, api=True)
                assert response.status_code == 401, f"{method} {url} {header}"
                assert response.json()["detail"]


# Tokens -------------------------------------------------------------------------------------

def test_a_new_token_from_the_token_page_revokes_the_old_one_everywhere(world):
    old = world.token.key
    owner_routes = [(r, rule_for(r.key)) for r in ALL_ROUTES
                    if rule_for(r.key).kind.startswith("api")
                    and "GET" in rule_for(r.key).methods]
    for route, rule in owner_routes:
        assert APIClient(HTTP_AUTHORIZATION=f"Token {old}").get(
            route_url(route, rule, world)).status_code == 200, route.key

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.owner)
    page = browser.get(reverse("api-token")).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(reverse("api-token"), {"csrfmiddlewaretoken": csrf}).status_code == 302

    new = Token.objects.get(user=world.owner).key
    assert new != old
    for route, rule in owner_routes:
        url = route_url(route, rule, world)
        assert APIClient(HTTP_AUTHORIZATION=f"Token {old}").get(url).status_code == 401, url
        assert APIClient(HTTP_AUTHORIZATION=f"Token {new}").get(url).status_code == 200, url


# CSRF ---------------------------------------------------------------------------------------

FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)


def post_forms(html: str, page_url: str) -> list[tuple[str, dict]]:
    """Each POST form of a page: its action and its fields (hidden and named values)."""
    forms = []
    for form in FORM.findall(html):
        opening = form[:form.index(">")]
        if not re.search(r'method="post"', opening, re.I):
            continue
        action = re.search(r'action="([^"]*)"', opening)
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form))
        forms.append((action.group(1) if action and action.group(1) else page_url, fields))
    return forms


def test_every_post_form_of_every_page_is_refused_without_its_csrf_token(world):
    """Every page alice (and staff, for the admin) can open is read for its POST forms;
    each is posted without the token (403), and the page must have put the token in it."""
    seen = set()
    for route in ALL_ROUTES:
        rule = rule_for(route.key)
        if "GET" not in rule.methods or rule.kind.startswith("api") or route.name in (
                "api-docs", "api-schema", None):
            continue
        persona = "staff" if rule.kind == "admin" else "owner"
        client = Client(enforce_csrf_checks=True)
        client.force_login(getattr(world, persona))
        url = route_url(route, rule, world)
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response["Content-Type"]:
            continue
        for action, fields in post_forms(response.content.decode(), url):
            assert "csrfmiddlewaretoken" in fields, f"a form on {url} posting to {action}"
            data = {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"}
            refused = client.post(action, data)
            assert refused.status_code == 403, f"{action} (form on {url}) without a token"
            seen.add(resolve(action.split("?")[0]).url_name)
    # The forms this covers, at least (a page that loses a form should be noticed here).
    assert {"login", "logout", "api-token", "dataset-detail", "dataset-delete",
            "dataset-upload", "evaluation-truth", "evaluation-transfer",
            "password_change", "transferability_evaluation_change"} <= seen, seen


def test_every_page_route_that_takes_a_post_refuses_it_without_the_csrf_token(world):
    """Also the forms a page shows only sometimes (retry appears once a checkpoint fails)."""
    posted = []
    for route in ALL_ROUTES:
        rule = rule_for(route.key)
        if "POST" not in rule.methods or rule.kind.startswith("api"):
            continue
        client = Client(enforce_csrf_checks=True)
        client.force_login(world.staff if rule.kind == "admin" else world.owner)
        url = route_url(route, rule, world)
        response = client.post(url, rule.body(world) if rule.body else {})
        assert response.status_code == 403, f"POST {url} without a token: {response.status_code}"
        posted.append(route.key)
    assert {"evaluation-retry", "dataset-delete", "logout", "api-token"} <= set(posted)
    assert Evaluation.objects.filter(owner=world.owner).count() == 2
    assert world.dataset.__class__.objects.filter(pk=world.dataset.pk).exists()


def test_the_login_form_needs_its_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "alice",
                                              "password": "alice-password-1"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("key", ["api-evaluation-list", "api-transfer-list",
                                 "api-evaluation-truth", "api-evaluation-cancel",
                                 "api-dataset-detail"])
def test_the_api_with_a_session_needs_the_csrf_token_and_with_a_token_does_not(world, key):
    route = next(r for r in ALL_ROUTES if r.key == key)
    rule = rule_for(key)
    method = next(m for m in rule.methods if m != "GET")
    url = route_url(route, rule, world)
    body = rule.body(world) if rule.body else None
    session = Client(enforce_csrf_checks=True)
    session.force_login(world.owner)
    refused = send(session, method, url, body, api=True)
    assert refused.status_code == 403, refused.content
    assert "CSRF" in refused.json()["detail"]
    with_token = send(Client(enforce_csrf_checks=True,
                             HTTP_AUTHORIZATION=f"Token {world.token.key}"),
                      method, url, body, api=True)
    assert with_token.status_code in rule.methods[method], with_token.content


# Files --------------------------------------------------------------------------------------

def test_no_route_serves_media_or_cached_features(world):
    """Uploaded images, weights and features are only reached through views that check
    the owner: nothing serves MEDIA_ROOT or the cache by path, not even to their owner."""
    media = Path(settings.MEDIA_ROOT)
    stored = sorted(p for p in media.rglob("*") if p.is_file())
    assert stored, "the dataset's files are in the media store"
    features = caches.features.path(world.result.feature_key, "pre_logits")
    assert features.exists()
    client = world.client("owner")
    candidates = [f"/{settings.MEDIA_URL.strip('/')}/{p.relative_to(media)}" for p in stored]
    candidates += [f"/media/{stored[0].relative_to(media)}",
                   f"/static/../media/{stored[0].relative_to(media)}",
                   f"/cache/{features.relative_to(Path(settings.ZOORANK_CACHE_DIR))}"]
    for url in candidates:
        response = client.get(url)
        assert response.status_code == 404, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert stored[0].read_bytes()[:64] not in body
    for route in ALL_ROUTES:
        assert not route.pattern.startswith(settings.MEDIA_URL.strip("/")), route
    with pytest.raises(Resolver404):
        resolve(candidates[0])


def test_the_features_export_is_the_owners_only(world):
    url = reverse("result-features", args=[world.evaluation.pk, world.result.pk])
    response = world.client("owner").get(url)
    assert response.status_code == 200
    npz = np.load(io.BytesIO(b"".join(response.streaming_content)))
    assert npz["features"].shape == (6, 4)
    for persona in ("outsider", "staff"):
        response = world.client(persona).get(url)
        assert response.status_code == 404
        assert not response.streaming and b"PK" not in response.content[:4]
    # An evaluation of mallory's cannot reach alice's result by its id either.
    theirs = Evaluation.objects.create(owner=world.outsider, dataset=create_target_dataset(
        world.outsider, "mallorys", image_folder_zip(Path(settings.MEDIA_ROOT).parent / "m.zip",
                                                     {"a": 2, "b": 2})), status=Status.DONE)
    response = world.client("outsider").get(
        reverse("result-features", args=[theirs.pk, world.result.pk]))
    assert response.status_code == 404


def test_the_admin_is_for_staff_only(world):
    world.outsider.is_staff = False
    for persona in ("owner", "outsider"):
        response = world.client(persona).get(reverse("admin:transferability_evaluation_changelist"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert world.client("staff").get(
        reverse("admin:transferability_evaluation_changelist")).status_code == 200


# Headers and the Content-Security-Policy ----------------------------------------------------

def csp(response) -> dict[str, list[str]]:
    policy = {}
    for part in response["Content-Security-Policy"].split(";"):
        directive, *sources = part.split()
        policy[directive] = sources
    return policy


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)([^>]*)>(.*?)</script>", re.S | re.I)
INLINE_HANDLER = re.compile(r"""\son[a-z]+=(?:"([^"]*)"|'([^']*)')""", re.I)


def csp_hash(source: str) -> str:
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


def html_pages(world):
    """Every page that answers its persona with HTML: (url, response)."""
    for route in ALL_ROUTES:
        rule = rule_for(route.key)
        if "GET" not in rule.methods:
            continue
        persona = "staff" if rule.kind == "admin" else "owner"
        url = route_url(route, rule, world)
        response = world.client(persona).get(url)
        if response.status_code == 200 and "text/html" in response.get("Content-Type", ""):
            yield url, response
    yield reverse("login"), world.client("anonymous").get(reverse("login"))
    yield "/no-such-page/", world.client("owner").get("/no-such-page/")


def test_every_page_passes_its_content_security_policy(world):
    """No inline script runs without the response's nonce, no handler without its hash,
    no script or frame from elsewhere; the policy forbids eval, plugins and framing."""
    pages = list(html_pages(world))
    assert len(pages) > 40
    nonces = set()
    scripts_seen = 0
    for url, response in pages:
        policy = csp(response)
        nonce = next(s for s in policy["script-src"] if s.startswith("'nonce-"))[7:-1]
        nonces.add(nonce)
        assert policy["default-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "'unsafe-eval'" not in policy["script-src"]
        html = response.content.decode()
        for attributes, body in INLINE_SCRIPT.findall(html):
            if re.search(r'type="application/(ld\+)?json"', attributes):
                continue  # data, never run
            scripts_seen += 1
            assert f'nonce="{nonce}"' in attributes, f"{url}: inline script without the " \
                                                     f"nonce: {body.strip()[:80]!r}"
        for double, single in INLINE_HANDLER.findall(html):
            assert csp_hash(double or single) in policy["script-src"], \
                f"{url}: inline handler {double or single!r} not allowed by its hash"
        for src in re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html):
            assert src.startswith("/") and not src.startswith("//"), f"{url}: script {src}"
    assert scripts_seen > 15  # base.html's own on each page, the charts', the evaluation page's
    assert len(nonces) == len(pages), "a nonce was used twice"


def test_every_inline_handler_in_the_templates_is_allowed_by_the_policy():
    policy_scripts = settings.ZOORANK_CSP["script-src"]
    template_dirs = [ROOT / "templates", *ROOT.glob("*/templates")]
    handlers = []
    for folder in template_dirs:
        for path in folder.rglob("*.html"):
            for double, single in INLINE_HANDLER.findall(path.read_text()):
                handlers.append(double or single)
                assert csp_hash(double or single) in policy_scripts, \
                    f"{path}: {double or single!r} needs ZOORANK_CSP_INLINE_HANDLERS"
    assert handlers  # the token page's select-on-focus


def test_the_chart_scripts_carry_the_nonce_and_injected_ones_do_not(world):
    """Class and dataset names a user chose end up in the charts; they are escaped, and a
    script written into them gets no nonce."""
    from transferability import charts

    evil = "</script><script>alert(1)</script>"
    response = world.client("owner").get(reverse("evaluation-detail", args=[world.evaluation.pk]))
    nonce = csp(response)["script-src"][1][7:-1]
    assert response.content.decode().count(f'<script nonce="{nonce}">') >= 3
    html = charts.class_balance([evil, "b"], [3, 3])
    assert "alert(1)</script>" not in html and "<script>alert" not in html


def test_the_security_headers_are_on_every_kind_of_response(world):
    responses = {
        "page": world.client("owner").get(reverse("dashboard")),
        "redirect": world.client("anonymous").get(reverse("dashboard")),
        "api": world.client("owner").get(reverse("api-root")),
        "api 401": world.client("anonymous").get(reverse("api-root")),
        "not found": world.client("owner").get("/no-such-page/"),
        "admin": world.client("staff").get(reverse("admin:index")),
        "export": world.client("owner").get(reverse("evaluation-export",
                                                    args=[world.evaluation.pk, "csv"])),
    }
    for what, response in responses.items():
        assert_protected_headers(response, what)
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", what


def test_hsts_is_sent_over_https_when_https_is_on(world, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    response = world.client("owner").get(reverse("dashboard"), secure=True)
    assert response["Strict-Transport-Security"] == \
        "max-age=31536000; includeSubDomains; preload"
    assert "Strict-Transport-Security" not in world.client("owner").get(reverse("dashboard"))


# Checkpoints made from a user's data -------------------------------------------------------

def test_a_distilled_checkpoint_does_not_show_its_owners_dataset_to_others(world):
    import torch

    from workers.transfers import save_distilled

    # Saved as a transfer saves it: its fields and recipe carry alice's dataset and classes.
    distilled = save_distilled(world.transfer, torch.nn.Linear(4, 2),
                               {"delta": {"accuracy_after": 50.0}, "recipe": {}})
    assert distilled.source_dataset == SECRET_DATASET
    assert set(distilled.source_classes) == set(SECRET_CLASSES)
    world.transfer.result_checkpoint = distilled
    world.transfer.save()
    for url in (reverse("checkpoint-detail", args=[distilled.pk]),
                reverse("checkpoint-list"), reverse("api-checkpoint-list")):
        response = world.client("outsider").get(url)
        assert response.status_code in (200, 404)
        assert not leaks(response), f"{url} shows alice's {leaks(response)}"
    # Hers: she sees it in the zoo and on its card.
    assert distilled.name in world.client("owner").get(reverse("checkpoint-list")).content.decode()
    assert world.client("owner").get(reverse("checkpoint-detail",
                                             args=[distilled.pk])).status_code == 200


# One submission limit for every route that submits work -------------------------------------
# Every route that stores an upload or queues work, page or API; each counts against the same
# ZOORANK_SUBMIT_RATE. Every other route that takes a POST is named in DOES_NOT_SUBMIT, so a
# new POST route must be put in one of the two.

SUBMITS = {"dataset-upload", "dataset-detail", "evaluation-retry", "evaluation-rerun",
           "evaluation-truth", "evaluation-transfer", "api-dataset-list", "api-evaluation-list",
           "api-evaluation-retry", "api-evaluation-truth", "api-transfer-list"}
DOES_NOT_SUBMIT = {"dataset-delete", "evaluation-cancel", "evaluation-delete", "logout",
                   "api-token", "api-evaluation-cancel", "login", "password_change",
                   "transfer-cancel", "api-transfer-cancel",
                   "api-checkpoint-list",  # staff adding to the shared zoo, not a user's work
                   "admin:logout"}


def test_every_route_that_takes_a_post_is_named_as_submitting_or_not():
    posts = {r.key for r in ALL_ROUTES
             if "POST" in rule_for(r.key).methods and rule_for(r.key).kind != "admin"}
    unnamed = posts - SUBMITS - DOES_NOT_SUBMIT
    assert not unnamed, f"say in tests/test_security.py whether these submit work: {unnamed}"
    assert not (SUBMITS | DOES_NOT_SUBMIT) - {r.key for r in ALL_ROUTES}


def submission(route: Route, rule: Rule, w: World, tmp_path: Path):
    """POST one submission to ``route`` as alice; the response."""
    url = route_url(route, rule, w)
    if route.key in ("dataset-upload", "api-dataset-list"):
        archive = image_folder_zip(tmp_path / f"{route.key}.zip", {"a": 2, "b": 2})
        with open(archive, "rb") as f:
            if route.key == "api-dataset-list":
                client = APIClient(HTTP_AUTHORIZATION=f"Token {w.token.key}")
                return client.post(url, {"name": "more", "file": f}, format="multipart")
            return w.client("owner").post(url, {"name": "more", "file": f})
    body = rule.body(w) if rule.body else {}
    if rule.kind.startswith("api"):
        return APIClient(HTTP_AUTHORIZATION=f"Token {w.token.key}").post(url, body,
                                                                          format="json")
    return w.client("owner").post(url, body, follow=True)


def things(w: World) -> tuple:
    return (Evaluation.objects.count(), w.dataset.__class__.objects.count(),
            GroundTruth.objects.count(), Transfer.objects.count(),
            CheckpointResult.objects.filter(queued_at__isnull=False).count())


@pytest.mark.parametrize("first", ["api-evaluation-list", "dataset-upload"])
def test_once_the_limit_is_used_every_submitting_route_refuses_and_says_when(
        world, settings, tmp_path, first):
    """The limit counts pages and API together: used up through one of them, every
    submitting route of both refuses, creates nothing and says when to retry; the rest go
    on."""
    settings.ZOORANK_SUBMIT_RATE = "1/hour"
    routes = {r.key: r for r in ALL_ROUTES}
    used = submission(routes[first], rule_for(first), world, tmp_path)
    assert used.status_code in (202, 302), used.content[:300]
    before = things(world)
    for key in sorted(SUBMITS):
        response = submission(routes[key], rule_for(key), world, tmp_path)
        where = f"POST {key} after the limit was used through {first}"
        text = response.content.decode()
        if rule_for(key).kind.startswith("api"):
            assert response.status_code == 429, where
            assert response.json()["retry_after"] > 3500, where
        elif key in ("dataset-upload", "dataset-detail"):
            assert response.status_code == 429, f"{where}: {response.status_code}"
            assert int(response["Retry-After"]) > 3500, where
        else:  # a button: back to its page, which says why
            assert response.status_code == 200, where
        assert "Too many submissions: at most 1 per hour, pages and API together. Try again " \
               "in 60 minutes." in text, f"{where}: {text[:300]}"
    assert things(world) == before
    # Reading and cancelling are not submissions; another user has their own count.
    assert world.client("owner").get(reverse("dashboard")).status_code == 200
    assert APIClient(HTTP_AUTHORIZATION=f"Token {world.token.key}").post(
        reverse("api-evaluation-cancel", kwargs=ev(world))).status_code == 409
    other = world.client("outsider").post(reverse("dataset-upload"), {"name": "x"})
    assert other.status_code == 200 and "Too many submissions" not in other.content.decode()


def test_the_limit_is_counted_in_redis_when_there_is_one():
    """Settings as a deployment reads them: with REDIS_URL the counts are Redis's, shared by
    every process and host; without, files shared by every process of the host."""
    import subprocess
    import sys

    def limits_backend(**env) -> str:
        code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
                "from django.conf import settings; print(settings.CACHES['limits']['BACKEND'])")
        environment = {k: v for k, v in __import__("os").environ.items()
                       if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
        return subprocess.run([sys.executable, "-c", code], env={**environment, **env},
                              capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.strip()

    assert limits_backend(REDIS_URL="redis://127.0.0.1:6379/9").endswith("RedisCache")
    assert limits_backend().endswith("FileBasedCache")
