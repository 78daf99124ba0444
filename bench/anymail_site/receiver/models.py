from django.db import models


class TrackedEvent(models.Model):
    event_id = models.CharField(max_length=200, unique=True)
    event_type = models.CharField(max_length=32)
    email = models.CharField(max_length=254)
    timestamp = models.DateTimeField(null=True)
