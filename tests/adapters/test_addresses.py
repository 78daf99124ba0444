"""The one address normalization."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import storable
from adapters.addresses import address_key, normalize_address
from adapters.errors import AddressError
from tests.support import hostile


@pytest.mark.parametrize(
    ("raw", "email", "key"),
    [
        ("alice@example.com", "alice@example.com", "alice@example.com"),
        ("  Alice@Example.COM \n", "Alice@example.com", "alice@example.com"),
        ("mailto:bob@Example.org", "bob@example.org", "bob@example.org"),
        ("MAILTO:bob%2Bnews@example.org?subject=unsubscribe", "bob+news@example.org", "bob+news@example.org"),
        ("<carol@example.net>", "carol@example.net", "carol@example.net"),
        ('"Carol, Q." <Carol@Example.NET>', "Carol@example.net", "carol@example.net"),
        ("Dave Example <dave.x@sub.example.co.uk>", "dave.x@sub.example.co.uk", "dave.x@sub.example.co.uk"),
        ("user@bücher.de", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("user@BÜCHER.de", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("user@例え.jp", "user@xn--r8jz45g.jp", "user@xn--r8jz45g.jp"),
        ("user@xn--bcher-kva.de", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("o'brien@example.ie", "o'brien@example.ie", "o'brien@example.ie"),
        ("trailing@example.com.", "trailing@example.com", "trailing@example.com"),
    ],
)
def test_normalizes(raw: str, email: str, key: str) -> None:
    address = normalize_address(raw)
    assert (address.email, address.key) == (email, key)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("no-at-sign", "exactly one @"),
        ("a@b@example.com", "exactly one @"),
        ("@example.com", "missing local part"),
        ("alice@", "missing domain"),
        ("alice@localhost", "no dot"),
        ("al ice@example.com", "invalid characters"),
        ("alice..x@example.com", "invalid characters"),
        (".alice@example.com", "invalid characters"),
        ("alice@exa_mple.com", "invalid domain label"),
        ("alice@-example.com", "invalid domain label"),
        ("alice@example..com", "invalid domain label"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("alice@" + "a" * 64 + ".com", "invalid domain label"),
        ("josé@example.com", "non-ASCII local part"),
        ("\udcff@example.com", "non-ASCII local part"),  # a lone surrogate, as JSON can carry
        ("alice@exa\udcffmple.com", "invalid international domain"),
        ("Name <>", "unparseable"),
    ],
)
def test_rejects_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        normalize_address(raw)


def test_non_string_is_rejected() -> None:
    with pytest.raises(AddressError):
        normalize_address(None)  # type: ignore[arg-type]


def test_local_part_compares_case_insensitively_but_displays_as_given() -> None:
    assert address_key("Bob.Smith@Example.com") == address_key("bob.smith@example.COM")
    assert normalize_address("Bob.Smith@Example.com").email == "Bob.Smith@example.com"


local = st.from_regex(r"[A-Za-z0-9_+-]{1,20}(\.[A-Za-z0-9_+-]{1,10}){0,2}", fullmatch=True)
domain = st.from_regex(r"([a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\.){1,3}[a-z]{2,6}", fullmatch=True)


@given(local, domain, st.sampled_from(["", "mailto:", " "]), st.booleans())
def test_normalization_is_idempotent(loc: str, dom: str, prefix: str, upper: bool) -> None:
    raw = f"{prefix}{loc}@{dom.upper() if upper else dom}"
    first = normalize_address(raw)
    again = normalize_address(first.email)
    assert first == again
    assert first.key == first.email.lower()


@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(lambda a, b: f"{a}@{b}", local, domain),
        st.builds(lambda a, b: f" {a.upper()}@{b.upper()} ", local, domain),
    )
)
def test_address_key_agrees_with_normalize(raw: str) -> None:
    try:
        expected = normalize_address(raw).key
    except AddressError:
        with pytest.raises(AddressError):
            address_key(raw)
    else:
        assert address_key(raw) == expected


@given(hostile.TEXT | st.builds(lambda a, b, c: f"{a}{b}@{c}", hostile.TEXT, local, domain))
def test_arbitrary_text_is_an_address_or_an_address_error(raw: str) -> None:
    """Any text (NUL, lone surrogates, control characters, huge) normalizes, idempotently and
    to a key both databases take, or raises AddressError, never another exception."""
    try:
        address = normalize_address(raw)
    except AddressError:
        return
    assert normalize_address(address.email) == address
    assert address.key == address_key(address.email) == address_key(raw)
    assert not storable.REFUSED.search(address.email)


@given(local, domain, st.lists(st.booleans(), min_size=80, max_size=80))
def test_the_key_ignores_case(loc: str, dom: str, upper: list[bool]) -> None:
    raw = f"{loc}@{dom}"
    mixed = "".join(c.upper() if up else c for c, up in zip(raw, upper, strict=False))
    assert address_key(mixed) == address_key(raw) == raw.lower()
