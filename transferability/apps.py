from django.apps import AppConfig


class TransferabilityConfig(AppConfig):
    name = "transferability"
    verbose_name = "Transferability"
