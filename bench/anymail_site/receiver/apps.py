from django.apps import AppConfig


class ReceiverConfig(AppConfig):
    name = "anymail_site.receiver"
    label = "receiver"

    def ready(self) -> None:
        pass
