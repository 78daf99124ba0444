from django.apps import AppConfig


class ReceiverConfig(AppConfig):
    name = "anymail_site.receiver"
    label = "receiver"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the tracking receiver
