"""CSV import: providers' exports, encodings, bad lines by number, extra columns kept, never a
resubscribe, no echo to the provider a list came from, and a backfill that pushes nothing."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select

from adapters.config import Config
from adapters.errors import PayloadError
from adapters.events import Kind, Source
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.importer import BATCH, ImportSummary, detect_encoding, import_csv, open_csv
from adapters.store.models import Event, OutboxRow
from adapters.store.queries import export_suppressions
from adapters.worker.outbox import Worker
from tests.support.fake_providers import FakeProviders
from tests.support.store import ev, state


def test_import_never_undoes_an_opt_out(hub: Hub, clock) -> None:
    with pytest.raises(PayloadError):
        hub.record([ev("a@example.com", Kind.RESUBSCRIBE, Source.IMPORT)])
    hub.record([ev("kept@example.com", Kind.COMPLAINT, Source.SENDGRID, provider_event_id="x1")])
    summary = import_csv(
        hub, io.StringIO("email,note\nkept@example.com,old list\nnew@example.com,\nnew@example.com,\nbroken,\n")
    )
    assert (summary.imported, summary.duplicates) == (1, 2)
    assert summary.invalid == [(5, "address must contain exactly one @")]
    s = state(hub, "kept@example.com")
    assert s["suppressed"]
    with hub.sessions() as session:
        row = next(r for r in export_suppressions(session) if r["email"] == "kept@example.com")
    assert (row["kind"], row["source"]) == ("complaint", "sendgrid")
    # importing the same file again stores nothing new
    again = import_csv(hub, io.StringIO("email\nkept@example.com\nnew@example.com\n"))
    assert (again.imported, again.duplicates) == (0, 2)
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.source == "import")) == 2


def test_import_keeps_extra_columns_and_origin(hub: Hub) -> None:
    import_csv(
        hub, io.StringIO("Email,list,reason\nz@example.com,promo,moved\n"), origin="legacy-esp", kind=Kind.COMPLAINT
    )
    with hub.sessions() as session:
        event = session.scalars(select(Event)).one()
    assert event.meta == {"list": "promo", "reason": "moved", "origin": "legacy-esp"}
    assert (event.kind, event.source) == ("complaint", "import")
    with pytest.raises(PayloadError, match="email"):
        import_csv(hub, io.StringIO("address\nz@example.com\n"))


# --- providers' exports, encodings, bad lines, --source, --no-push -----------------------------

EXPORTS = Path(__file__).parents[2] / "data" / "exports"


def imported(hub: Hub, name: str, **kwargs: Any) -> ImportSummary:
    with open_csv(str(EXPORTS / name)) as stream:
        return import_csv(hub, stream, **kwargs)


def events(hub: Hub) -> list[Event]:
    with hub.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


@pytest.mark.parametrize(
    ("name", "addresses", "kept"),
    [
        (
            "mailchimp_unsubscribed_members.csv",
            ["ana.souza@example.com.br", "J.Okafor@example.org", "zoe.muller@example.de"],
            {"First Name": "Zoë", "UNSUB_REASON_OTHER": "too many emails", "CC": "DE"},
        ),
        (
            "sendgrid_global_unsubscribes.csv",
            ["maria.garcia@example.es", "li.wei@example.cn", "ANA.SOUZA@example.com.br"],
            {"created": "1720000000"},
        ),
        (
            "hubspot_unsubscribes_and_bounces.csv",
            ["pat.lee@example.com", "sam.ito@example.jp"],
            {"Portal Unsubscribe": "TRUE", "Portal Spam Report": "TRUE"},
        ),
        (
            "constant_contact_unsubscribed.csv",
            ["chloe.martin@example.fr", "r.kowalski@example.pl"],
            {"First name": "Radosław", "Unsubscribe source": "Account"},
        ),
    ],
)
def test_each_providers_export_is_understood(hub: Hub, name: str, addresses: list[str], kept: dict[str, str]) -> None:
    summary = imported(hub, name)
    assert (summary.imported, summary.duplicates, summary.invalid) == (len(addresses), 0, [])
    stored = events(hub)
    assert [e.email for e in stored] == addresses
    assert kept.items() <= stored[-1].meta.items()
    assert not any(key.startswith("\ufeff") for e in stored for key in e.meta)  # the BOM is not a column name


def test_column_is_chosen_by_name_or_by_column(hub: Hub) -> None:
    text = "Name,Email Address,email\nAda,first@example.com,second@example.com\n"
    import_csv(hub, io.StringIO(text))  # "email" comes before "email address" in preference
    import_csv(hub, io.StringIO(text), column="  EMAIL address ")
    assert sorted(e.email for e in events(hub)) == ["first@example.com", "second@example.com"]
    with pytest.raises(PayloadError, match=r"no 'Contact' column \(columns: 'Name', 'Email Address', 'email'\)"):
        import_csv(hub, io.StringIO(text), column="Contact")


def test_a_latin1_file_is_detected_and_read(hub: Hub) -> None:
    with open_csv(str(EXPORTS / "latin1_legacy_list.csv")) as stream:
        assert stream.encoding == "cp1252"
        summary = import_csv(hub, stream)
    assert summary.imported == 2
    assert [e.meta for e in events(hub)] == [
        {"Name": "François Lefèvre", "Note": "désabonné"},
        {"Name": "Inés Peña", "Note": "baja “urgente”"},
    ]


def test_detect_encoding(tmp_path: Path) -> None:
    cases = {
        "utf-8-sig": "\ufeffemail\nzoë@example.com\n".encode(),
        "cp1252": "email\nzoë@example.com\n".encode("cp1252"),
        "latin-1": b"email\n\x81@example.com\n",  # 0x81: undefined in cp1252
    }
    for expected, data in cases.items():
        assert detect_encoding(io.BytesIO(data)) == expected
    # a multi-byte sequence cut by a read boundary is still UTF-8
    assert detect_encoding(io.BytesIO("é".encode() * 10), chunk=3) == "utf-8-sig"
    path = tmp_path / "list.csv"
    path.write_bytes("email,name\nx@example.com,Zoë\n".encode("cp1252"))
    with open_csv(str(path), "utf-8") as stream:  # told wrongly: the byte becomes U+FFFD, no traceback
        assert stream.read().endswith("Zo\ufffd\n")
    with pytest.raises(PayloadError, match="unknown encoding 'klingon'"):
        open_csv(str(path), "klingon")


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_imported(hub: Hub, tmp_path: Path) -> None:
    summary = imported(hub, "bad_lines.csv")
    assert summary.imported == 3
    assert summary.invalid == [
        (3, "empty address"),
        (4, "address must contain exactly one @"),
        (5, "no 'email' field"),
        (7, "invalid characters in local part"),
    ]
    assert summary.line().startswith("imported 3, duplicates 0, invalid 4 (line 3: empty address, line 4: ")
    blob = tmp_path / "blob.csv"  # a field past the csv module's limit: that line alone is bad
    blob.write_text(f'email,note\na@example.com,"{"x" * 200_000}"\nb@example.com,ok\n')
    with open_csv(str(blob)) as stream:
        summary = import_csv(hub, stream)
    assert summary.imported == 1 and [n for n, _ in summary.invalid] == [2]
    assert "field larger than field limit" in summary.invalid[0][1]


def test_source_records_the_providers_events_and_never_echoes_them(
    make_hub: Callable[[Config], Hub], push_config: Config, fake_providers: FakeProviders
) -> None:
    hub = make_hub(push_config)
    summary = imported(hub, "mailchimp_unsubscribed_members.csv", origin="mailchimp")
    assert summary.imported == 3
    stored = events(hub)
    assert {(e.source, e.actor, e.verification) for e in stored} == {("mailchimp", "import", "none")}
    with requests.Session() as http:
        tallies = Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()
    assert {slug: t.pushed for slug, t in tallies.items()} == {"mailchimp": 0, "sendgrid": 3, "hubspot": 3}
    assert fake_providers.mailchimp.calls == []  # nothing goes back to where the list came from
    addresses = {"ana.souza@example.com.br", "j.okafor@example.org", "zoe.muller@example.de"}
    assert {a.lower() for a in fake_providers.sendgrid.global_suppressions} == addresses
    assert fake_providers.hubspot.unsubscribed_all == addresses
    # any other name is kept as the list's origin, and the rows are the import's own
    import_csv(hub, io.StringIO("email\nold@example.com\n"), origin="legacy-esp")
    assert (events(hub)[-1].source, events(hub)[-1].meta) == ("import", {"origin": "legacy-esp"})


def test_no_push_queues_nothing(make_hub: Callable[[Config], Hub], push_config: Config) -> None:
    hub = make_hub(push_config)
    summary = imported(hub, "sendgrid_global_unsubscribes.csv", push=False)
    assert summary.imported == 3 and state(hub, "li.wei@example.cn")["suppressed"]
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 0


def test_an_import_batch_and_a_delivery_fit_postgresqls_lock_table(postgresql_url: str) -> None:
    """Each address of a batch holds an advisory lock until the batch commits: a batch larger
    than the server's lock table fails with "out of shared memory", every time."""
    engine = create_engine(postgresql_url)
    try:
        with engine.connect() as conn:
            setting = {n: int(conn.exec_driver_sql(f"SHOW {n}").scalar_one()) for n in _LOCK_TABLE}
    finally:
        engine.dispose()
    room = setting["max_locks_per_transaction"] * (setting["max_connections"] + setting["max_prepared_transactions"])
    assert BATCH["postgresql"] + 1_000 <= room  # and a 1,000-event webhook delivery at the same time


_LOCK_TABLE = ("max_locks_per_transaction", "max_connections", "max_prepared_transactions")
