from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The account rules that hold however a user is saved (pages, admin, shell, commands):
    connected at startup, not when the first page is asked for."""

    name = "config"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from . import accounts  # noqa: F401  its receivers connect on import
