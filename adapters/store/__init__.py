"""The opt-out store, on SQLite or PostgreSQL: the tables (``models``), engine and migrations
(``database``), recording events and the state they imply (``record``), reading it
(``queries``), and the rows each part keeps: ``recipients`` (what a token names), ``review``,
``outbox`` (admin reads), ``lookups`` (HubSpot events awaiting an address), ``confirmations``
(the mail queue), ``importer``; ``leases`` claims due queue rows for the worker, and ``bulk``
holds the many-rows SQL they share.

Their functions take the caller's session and never commit: the edge that received a
request owns its transaction (README "How it fits together"). The importer alone commits, in
batches, through the hub.
"""
