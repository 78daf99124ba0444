"""optout-hub's SMTP side. Depends on ``adapters``, never on ``webhooks``.

A message goes one way through it (see the README's "Mail in: the SMTP listener"):
:mod:`inbound.listener` (SMTP only: accept, refuse relaying) hands it to
:mod:`inbound.evidence`, which commits the raw message as a ``pending`` evidence row before the
``250``; :mod:`inbound.classification` (one background thread) takes pending rows, classifies
them with the pure :mod:`inbound.classify` package and records the events they imply.
"""
