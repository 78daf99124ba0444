"""optout-hub's core: everything that knows neither SMTP nor HTTP.

- The vocabulary, at the top: ``events`` (the one ``OptOutEvent``), ``errors`` (the one
  exception tree), ``addresses`` (the one address normalization), ``config``, ``tokens``,
  ``metrics``, ``wording`` (the catalogues pages and mail share), ``runtime``, and ``hub``
  (the wired core of one process).
- ``providers/``: one module per mail provider (verify and parse its webhooks in, push
  opt-outs out), the HTTP client and payload readers they share, and their registry. It
  imports nothing from the store or the worker.
- ``store/``: the tables, engine and migrations, and every read and write of them.
- ``worker/``: the loop that pushes the outbox to the providers, resolves HubSpot contacts
  and sends confirmation mail.
- ``cli``: the ``optout-hub`` command.

``inbound`` (SMTP) and ``webhooks`` (HTTP) build on this package; nothing here imports them
(the CLI starts them by dotted path). README "How it fits together" draws the layers.
"""
