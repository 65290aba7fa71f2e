"""The Celery app. Celery is only the transport: job state lives in our own models."""

import os

from celery import Celery

from workers import file_broker

file_broker.register()  # the on-disk transport of the embedded default
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("zoorank")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
