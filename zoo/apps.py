from django.apps import AppConfig


class ZooConfig(AppConfig):
    name = "zoo"
    verbose_name = "Checkpoint zoo"
