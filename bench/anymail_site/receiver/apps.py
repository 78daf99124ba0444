from django.apps import AppConfig


class ReceiverConfig(AppConfig):
    name = "anymail_site.receiver"
    label = "receiver"

    def ready(self) -> None:
        from bench.anymail_site.receiver import signals
