"""Settings for the test suite: the app's own settings, with a throwaway var/ folder.

Tests run against whatever DATABASE_URL / REDIS_URL say, SQLite and the on-disk broker
otherwise, exactly as the app does.
"""

import os
import tempfile

if "ZOORANK_VAR_DIR" not in os.environ:  # a worker started by the suite gets the suite's
    os.environ["ZOORANK_VAR_DIR"] = tempfile.mkdtemp(prefix="zoorank-test-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins

# Plain names, no collectstatic: tests/test_serving.py collects and checks the real storage.
# The default storage is the settings' own: the file system, or the object store that
# ZOORANK_STORAGE_URL names (a worker that a test starts against its S3 server).
STORAGES = {
    "default": STORAGES["default"],  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# No test is throttled by accident; tests/transferability/test_api.py lowers it to test 429.
ZOORANK_SUBMIT_RATE = "100000/hour"
# Per-process counts: a Redis shared with other runs must not carry them over.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
          "limits": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                     "LOCATION": "limits"}}
