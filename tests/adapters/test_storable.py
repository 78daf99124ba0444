"""Text that databases refuse (NUL, lone surrogates) becomes U+FFFD; everything else is kept."""

from __future__ import annotations

import json

from adapters.events import Kind, OptOutEvent, Source
from adapters.storable import storable, storable_fields, storable_text


def test_nul_and_lone_surrogates_become_replacement_characters() -> None:
    # as JSON bytes from a provider decode: escapes of NUL and of half a surrogate pair
    decoded = json.loads(b'"a\\u0000b \\udc80 c\\ud83d"')
    assert storable_text(decoded) == "a\ufffdb \ufffd c\ufffd"
    # as bytes that are not UTF-8 decode with "surrogateescape"
    assert storable_text(b"caf\xe9\x00".decode("utf-8", "surrogateescape")) == "caf\ufffd\ufffd"


def test_other_text_is_kept_as_it_is() -> None:
    for text in ["plain", "", "café", "退订", "إلغاء", "😀", json.loads(b'"\\ud83d\\ude00"'), "tab\tand\nnewline"]:
        assert storable_text(text) == text
    assert storable_text("\U0010ffff") == "\U0010ffff"


def test_json_values_are_cleaned_at_any_depth_keys_included() -> None:
    value = {"a\x00": [1, 2.5, None, True, {"deep": [["x\udc80"]]}], "n": 3}
    assert storable(value) == {"a\ufffd": [1, 2.5, None, True, {"deep": [["x\ufffd"]]}], "n": 3}
    assert storable_fields({"k": ("t\x00",)}) == {"k": ["t\ufffd"]}


def test_every_event_is_made_storable_when_built() -> None:
    event = OptOutEvent(
        email="ann@example.com",
        kind=Kind.UNSUBSCRIBE,
        source=Source.API,
        provider_event_id="id\x00",
        reason="why\x00 \udcff",
        campaign="c\ud800",
        metadata={"change_source": "CRM\x00", "nested": {"list": ["\udc80"]}},
    )
    assert (event.provider_event_id, event.reason, event.campaign) == ("id\ufffd", "why\ufffd \ufffd", "c\ufffd")
    assert event.metadata == {"change_source": "CRM\ufffd", "nested": {"list": ["\ufffd"]}}
    assert event.replace(reason="ok").reason == "ok"
