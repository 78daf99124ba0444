"""The per-event receiver anymail's docs suggest: one ``get_or_create`` per tracking event,
keyed on the ESP's event id so a retried delivery is stored once."""

from anymail.signals import tracking
from django.dispatch import receiver

from .models import TrackedEvent


@receiver(tracking)
def store_event(sender, event, esp_name, **kwargs):
    TrackedEvent.objects.get_or_create(
        event_id=event.event_id,
        defaults={"event_type": event.event_type, "email": event.recipient or "", "timestamp": event.timestamp},
    )
