"""zoorank settings: every value comes from the environment, with safe local defaults.

With nothing set the app runs on one machine: SQLite and an on-disk Celery transport under
``var/``. ``DATABASE_URL`` switches to PostgreSQL, ``REDIS_URL`` to Redis as the broker.
"""

import ipaddress
import re
from pathlib import Path

import dj_database_url

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ZOORANK_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # A local default that is stable per installation and never shipped: kept under var/.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Security ------------------------------------------------------------------------------------
# ZOORANK_HTTPS=1 (production behind TLS): http is redirected to https, cookies are sent over
# https only, and browsers are told to use https for ZOORANK_HSTS_SECONDS (a year). Behind a
# proxy that terminates TLS and sets X-Forwarded-Proto, also ZOORANK_TRUST_X_FORWARDED_PROTO=1.
# `DEBUG=0 SECRET_KEY=... ALLOWED_HOSTS=... ZOORANK_HTTPS=1 manage.py check --deploy` is clean.
ZOORANK_HTTPS = env_bool("ZOORANK_HTTPS", False)
SECURE_SSL_REDIRECT = ZOORANK_HTTPS
SESSION_COOKIE_SECURE = ZOORANK_HTTPS
CSRF_COOKIE_SECURE = ZOORANK_HTTPS
SECURE_HSTS_SECONDS = env_int("ZOORANK_HSTS_SECONDS", 365 * 24 * 3600) if ZOORANK_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ZOORANK_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("ZOORANK_HSTS_PRELOAD", True)
if env_bool("ZOORANK_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Inline event handlers allowed by their hash (CSP 'unsafe-hashes'); every other inline script
# needs the request's nonce: <script nonce="{{ request.csp_nonce }}">. A form asks for
# confirmation with data-confirm="..." (zoorank.js), not onsubmit: its text names the object.
ZOORANK_CSP_INLINE_HANDLERS = [
    "this.select()",  # the token page
]


def _csp_hash(source: str) -> str:
    import base64
    import hashlib

    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


# config/middleware.py sends it on every response; "{nonce}" is the request's nonce. Plotly,
# Swagger UI and the admin are served from here; styles may be inline (plotly sets them).
ZOORANK_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "'nonce-{nonce}'"]
    + (["'unsafe-hashes'"] + [_csp_hash(h) for h in ZOORANK_CSP_INLINE_HANDLERS]
       if ZOORANK_CSP_INLINE_HANDLERS else []),
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:", "blob:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# End of security ---------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",  # failed logins (the login throttling block below)
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: no CDN
    "zoo",
    "transferability",
    "workers",
    "config.apps.AccountsConfig",  # a new password revokes the API token (config/accounts.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.middleware.RejectNulCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A large body from someone not logged in is refused unread: no view, and no CSRF check
    # (it runs as the view is called, and reads a form's body), gets to it.
    "config.middleware.LimitAnonymousBodies",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "zoorank.sqlite3",
            "OPTIONS": {
                # Web server and worker processes share the file: WAL lets readers run
                # beside a writer, the timeout waits for a lock instead of failing.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
            },
            "TEST": {"NAME": str(VAR_DIR / "test_zoorank.sqlite3")},
        }
    }
# A worker started by the test suite points at the test database by name.
if env_str("ZOORANK_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = env_str("ZOORANK_DATABASE_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (config/login_throttling.py) ------------------------------------------------
# Both login pages (/accounts/login/, /admin/login/) count failed logins with django-axes, in
# the database: every process and host sees the same counts, on SQLite as on PostgreSQL.
# ZOORANK_LOGIN_FAILURES failures within ZOORANK_LOGIN_COOLOFF_MINUTES lock out the username
# (from any address: many addresses guessing one password) and, counted apart, the address
# (for any username: one address trying passwords on many accounts). While locked, the right
# password is refused too, and the page says in how many minutes to try again. A login does
# not clear the counts (it would let an attacker with an account of their own reset their
# address). `manage.py axes_reset_username NAME` or `axes_reset_ip ADDRESS` lifts a lock.
# Failed API tokens: ZOORANK_TOKEN_FAILURES from one address within the same minutes, and
# that address's token requests are answered 429 with a Retry-After until they are over.
# The address is REMOTE_ADDR. Behind a reverse proxy every client has the proxy's address (one
# client's failures would lock everyone out): name the proxy in ZOORANK_TRUSTED_PROXIES
# (addresses or networks, comma-separated), and the address it appends to X-Forwarded-For is
# used instead. Nobody is trusted by default: a client could write any X-Forwarded-For.
ZOORANK_LOGIN_FAILURES = env_int("ZOORANK_LOGIN_FAILURES", 5)
ZOORANK_LOGIN_COOLOFF_MINUTES = env_float("ZOORANK_LOGIN_COOLOFF_MINUTES", 15)
ZOORANK_TOKEN_FAILURES = env_int("ZOORANK_TOKEN_FAILURES", 30)
ZOORANK_TRUSTED_PROXIES = env_list("ZOORANK_TRUSTED_PROXIES", [])
for _proxy in ZOORANK_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ValueError(f"ZOORANK_TRUSTED_PROXIES: {_proxy!r} is not an address or a "
                         f"network") from None
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = "config.login_throttling.failure_limit"
AXES_COOLOFF_TIME = "config.login_throttling.cool_off"
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_CLIENT_IP_CALLABLE = "config.login_throttling.client_address"
AXES_LOCKOUT_CALLABLE = "config.login_throttling.lockout_response"
AXES_RESET_ON_SUCCESS = False
# Attempts during a lock are refused without being counted: a lock lasts the cool-off from
# the failure that set it, and the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # failures only: no row per successful login
AXES_ENABLE_ADMIN = False  # the reset commands above lift a lock
AXES_VERBOSE = False  # no banner from every process; failures are still logged

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [("site", BASE_DIR / "config" / "static")]  # the favicon
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly/plotly.min.js from the installed package, never from a CDN.
    "config.finders.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # `collectstatic` (make run / make demo do it) writes content-hashed copies with .gz and
    # .br siblings; pages then link the hashed names, which WhiteNoise serves compressed
    # and cached for a year. Without it, pages link the plain names (config/storage.py).
    "staticfiles": {"BACKEND": "config.storage.StaticStorage"},
}

MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Decoded images and extracted features, keyed by content; safe to delete.
ZOORANK_CACHE_DIR = Path(env_str("ZOORANK_CACHE_DIR", str(VAR_DIR / "cache")))
# Hub downloads (zoo/hub.py): a server error, a timeout or a cut connection is tried again
# up to this many times in all, waiting the backoff, then twice that, and so on.
ZOORANK_HUB_TRIES = env_int("ZOORANK_HUB_TRIES", 4)
ZOORANK_HUB_BACKOFF_SECONDS = env_float("ZOORANK_HUB_BACKOFF_SECONDS", 2)
ZOORANK_HUB_TIMEOUT_SECONDS = env_float("ZOORANK_HUB_TIMEOUT_SECONDS", 10)

# Self-healing (workers/healing.py): a row whose worker has not beaten for the stall limit
# is queued again by the sweep every worker runs; a task past its time limit stops and is
# recorded as failed. The Redis visibility timeout (below) stays above the time limit, so
# a healthy long task is never delivered twice.
ZOORANK_STALL_MINUTES = env_float("ZOORANK_STALL_MINUTES", 30)
ZOORANK_SWEEP_SECONDS = env_float("ZOORANK_SWEEP_SECONDS", 60)
ZOORANK_TASK_TIME_LIMIT_MINUTES = env_float("ZOORANK_TASK_TIME_LIMIT_MINUTES", 120)
# Fair queueing (transferability/dispatch.py): checkpoints one user may have queued or
# running at once; the rest wait their turn. At least the number of GPU workers.
ZOORANK_USER_IN_FLIGHT = env_int("ZOORANK_USER_IN_FLIGHT", 8)

# Uploads stream to disk; archives are validated before anything is kept.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = ["config.uploads.LargeChunkMemoryUploadHandler",
                        "config.uploads.LargeChunkTemporaryUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# A request body from someone not logged in (a login form) is at most this; a larger one
# is refused before it is read (config/middleware.py).
ZOORANK_ANONYMOUS_BODY_BYTES = 1024 * 1024
ZOORANK_ARCHIVE_LIMITS = {
    "max_bytes": env_int("ZOORANK_MAX_ARCHIVE_MB", 2048) * 1024 * 1024,
    "max_entries": env_int("ZOORANK_MAX_ARCHIVE_ENTRIES", 200_000),
    "max_unpacked_bytes": env_int("ZOORANK_MAX_UNPACKED_MB", 8192) * 1024 * 1024,
    "max_ratio": env_int("ZOORANK_MAX_COMPRESSION_RATIO", 200),
    "max_pixels": env_int("ZOORANK_MAX_IMAGE_PIXELS", 50_000_000),
    # Up to this share of unreadable images is skipped with a warning; more refuses.
    "max_unreadable_fraction": env_float("ZOORANK_MAX_UNREADABLE_PERCENT", 1.0) / 100,
}

# Each user's uploads and unpacked datasets together (transferability/quota.py).
ZOORANK_USER_QUOTA_GB = env_float("ZOORANK_USER_QUOTA_GB", 20)

# Submissions (POST of datasets, evaluations, retries, ground truth, transfers) per user:
# "<count>/<second|minute|hour|day>". Answered 429 with a Retry-After beyond it.
ZOORANK_SUBMIT_RATE = env_str("ZOORANK_SUBMIT_RATE", "60/hour")
if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", ZOORANK_SUBMIT_RATE):
    raise ValueError(f"ZOORANK_SUBMIT_RATE must look like 60/hour, got {ZOORANK_SUBMIT_RATE!r}")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.login_throttling.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's three, the JSON one bounding how deeply a body nests (transferability/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "transferability.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "transferability.api.schema.AutoSchema",
    # Every error is a JSON object with a "detail" (transferability/api/errors.py).
    "EXCEPTION_HANDLER": "transferability.api.errors.exception_handler",
    # The rate is read per request from ZOORANK_SUBMIT_RATE (transferability/api/throttling.py).
    "DEFAULT_THROTTLE_RATES": {"submit": ZOORANK_SUBMIT_RATE},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "zoorank API",
    "DESCRIPTION": (
        "Rank pretrained checkpoints for a target image dataset: upload the dataset, submit an "
        "evaluation, poll it, measure the true accuracy, distil one checkpoint into another. "
        "Authenticate with `Authorization: Token <key>` (your token: "
        "[/accounts/token/](/accounts/token/)), or log in to try it out here. "
        "Lists are paginated (`count`, `next`, `previous`, `results`). Every error is a JSON "
        "object with a `detail`; a validation error adds one list of messages per field."
    ),
    "VERSION": "1",
    "TAGS": [
        {"name": "datasets", "description": "Your labelled image datasets."},
        {"name": "evaluations", "description": "Checkpoints scored on a dataset, their ranking, "
                                               "the true accuracy on request."},
        {"name": "transfers", "description": "Knowledge transfer (KL+DP) from a teacher "
                                             "checkpoint into a student."},
        {"name": "checkpoints", "description": "The zoo."},
        {"name": "metrics", "description": "The transferability metrics and baselines."},
        {"name": "root", "description": "Where everything is."},
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,  # the upload's file field is binary in the request
    "SCHEMA_PATH_PREFIX": "/api/",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/favicon.ico",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True},
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "transferability.models.Status",
        "CorrectnessSourceEnum": "transferability.models.Evaluation.CorrectnessSource",
        "VariantEnum": "transferability.models.Transfer.Variant",
        "ModeEnum": "transferability.models.GroundTruth.Mode",
        "TransferModeEnum": "transferability.models.Transfer.Mode",
        "TransferOrderEnum": "transferability.models.Transfer.Order",
    },
}

# Celery: Redis when REDIS_URL is set, else an on-disk transport that needs no server.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # "limits" holds the submission counts (transferability/api/throttling.py): one count
    # for every web process of every host.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL, "KEY_PREFIX": "zoorank"},
              "limits": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                         "LOCATION": REDIS_URL, "KEY_PREFIX": "zoorank-limits"}}
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(ZOORANK_TASK_TIME_LIMIT_MINUTES * 60) + 600}
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport, writing each message atomically (workers/file_broker.py).
    CELERY_BROKER_URL = "zoorank-files://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    # Without Redis the submission counts are files that every process of this host shares
    # (not one count per gunicorn process); several hosts need REDIS_URL.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
              "limits": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                         "LOCATION": str(VAR_DIR / "limits")}}
    # The file transport has no broadcast channel worth using for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "gpu"
CELERY_TASK_ROUTES = {"workers.tasks.*": {"queue": "gpu"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# WhiteNoise serves the collected files (hashed, compressed) and, for a run without
# collectstatic, the finders' files under their plain names.
WHITENOISE_USE_FINDERS = True
WHITENOISE_KEEP_ONLY_HASHED_FILES = True  # the plain names come from the finders
WHITENOISE_AUTOREFRESH = DEBUG

# Object storage ----------------------------------------------------------------------------
# ZOORANK_STORAGE_URL=s3://bucket/prefix keeps uploads, datasets, weights and features in an
# S3-compatible store (django-storages), shared by every host; endpoint and credentials come
# from boto3's variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_DEFAULT_REGION). Each host then keeps what it uses in ZOORANK_CACHE_DIR, at most
# ZOORANK_LOCAL_CACHE_GB, least recently used first out (config/local_cache.py). Unset, the
# local file system under MEDIA_ROOT is the store.
ZOORANK_STORAGE_URL = env_str("ZOORANK_STORAGE_URL")
ZOORANK_LOCAL_CACHE_GB = env_float("ZOORANK_LOCAL_CACHE_GB", 50)
if ZOORANK_STORAGE_URL:
    from .local_cache import s3_storage

    STORAGES["default"] = s3_storage(ZOORANK_STORAGE_URL)
    # boto3 says where it found its endpoint on every client: not worth a line per client.
    LOGGING.setdefault("loggers", {})["botocore"] = {"level": "WARNING"}
