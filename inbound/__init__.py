"""optout-hub's SMTP side: the listener (:mod:`inbound.listener`), the pure classifier
(:mod:`inbound.classify`, :mod:`inbound.replies`) and the step between them that turns stored
messages into events (:mod:`inbound.processing`). Depends on ``adapters``, never on ``webhooks``.
"""
