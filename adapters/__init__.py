"""optout-hub's core: the normalized event, configuration, store, tokens, outbox and providers.

Nothing in this package knows about SMTP or Flask; ``inbound`` and ``webhooks`` build on it.
"""
