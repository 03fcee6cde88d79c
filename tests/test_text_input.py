"""Text other systems send: control characters, lone surrogates, numbers and non-ASCII
email addresses are refused (or, for an internationalized domain, made ASCII) at the input."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from activities.directory import Directory
from tests.factories import ACME_BERLIN, act, make_rfi, rfi_data
from workflows.lifecycle import ActionRejected, Referral
from workflows.models import ContactLookup, PartnerContact, ReasonPayload, Rfi
from workflows.payloads import parse_referral_input

NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)
# Every text field of the RFI, as a path into its JSON.
SHORT_TEXTS = [
    ("location",),
    ("company_size",),
    ("customer", "name"),
    ("customer", "company"),
    ("customer", "phone"),
]
LONG_TEXTS = [("need",)]
# C0 and C1 controls (Unicode category Cc) and lone surrogates, with the error each gets.
FORBIDDEN = [
    ("\x00", "control character U+0000 is not allowed"),
    ("\x1b", "control character U+001B is not allowed"),
    ("\x0b", "control character U+000B is not allowed"),
    ("\x7f", "control character U+007F is not allowed"),
    ("\x85", "control character U+0085 is not allowed"),
    ("\x9f", "control character U+009F is not allowed"),
    ("\ud800", "lone surrogate U+D800 is not allowed"),
    ("\udfff", "lone surrogate U+DFFF is not allowed"),
]


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = rfi_data()
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


def refusal(data: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """Where and why the RFI is refused: its one error."""
    with pytest.raises(ValidationError) as refused:
        Rfi.model_validate(data)
    [error] = refused.value.errors()
    return error["loc"], error["msg"]


@pytest.mark.parametrize(("char", "message"), FORBIDDEN)
@pytest.mark.parametrize("path", [*SHORT_TEXTS, *LONG_TEXTS, ("customer", "email")])
def test_control_characters_and_lone_surrogates_are_refused_in_every_text(
    path: tuple[str, ...], char: str, message: str
) -> None:
    value = f"maria{char}@lopez.example" if path[-1] == "email" else f"Ber{char}lin"
    assert refusal(with_value(path, value)) == (path, message)


@pytest.mark.parametrize("char", ["\n", "\r", "\t"])
def test_line_breaks_and_tabs_are_kept_in_long_texts_only(char: str) -> None:
    need = f"Migrate our ERP:{char}finance{char}logistics"
    assert make_rfi(need=need).need == need
    assert ReasonPayload.model_validate({"reason": need}).reason == need
    for path in SHORT_TEXTS:
        assert refusal(with_value(path, f"Lopez{char}Logistics")) == (
            path,
            f"control character U+{ord(char):04X} is not allowed",
        )


def test_the_workflow_input_names_the_character_and_the_field() -> None:
    data = {"rfi": rfi_data(need="ERP\u0000 move"), "partner_id": "acme-consulting"}
    with pytest.raises(ValueError, match=r"rfi\.need: control character U\+0000 is not allowed"):
        parse_referral_input([data])


@pytest.mark.parametrize(("char", "message"), FORBIDDEN)
def test_a_reason_with_a_control_character_is_refused(char: str, message: str) -> None:
    referral = Referral(make_rfi(), "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    with pytest.raises(ActionRejected) as refused:
        act(referral, "no_thanks", {"reason": f"Fully{char}booked"}, NOW)
    assert refused.value.reason == f"invalid payload: reason: {message}"
    assert referral.transitions == []


@pytest.mark.parametrize("field", ["partner_name", "contact_name", "location", "contact_email"])
def test_the_partner_contact_refuses_control_characters(field: str) -> None:
    data = ACME_BERLIN.model_dump()
    data[field] = "berlin\x00@acme-consulting.example" if field == "contact_email" else "A\x00"
    with pytest.raises(ValidationError, match=r"control character U\+0000 is not allowed"):
        PartnerContact.model_validate(data)


# --- Numbers are not text --------------------------------------------------------------


@pytest.mark.parametrize("number", [200, 200.5, float("inf")])
@pytest.mark.parametrize("path", [("id",), ("region",), *SHORT_TEXTS, *LONG_TEXTS])
def test_a_number_is_refused_where_text_is_expected(path: tuple[str, ...], number: Any) -> None:
    assert refusal(with_value(path, number)) == (path, "Input should be a valid string")


def test_a_company_size_of_1e400_is_refused_not_read_as_inf() -> None:
    text = Rfi.model_validate(rfi_data()).model_dump_json()
    text = text.replace('"company_size":"200-500"', '"company_size":1e400')
    assert "1e400" in text
    with pytest.raises(ValidationError, match="company_size\n  Input should be a valid string"):
        Rfi.model_validate_json(text)
    data = {"rfi": rfi_data(company_size=float("1e400")), "partner_id": "acme-consulting"}
    with pytest.raises(ValueError, match=r"rfi\.company_size: Input should be a valid string"):
        parse_referral_input([data])  # as the workflow reads its JSON argument


# --- Email addresses ---------------------------------------------------------------------

ASCII_ONLY = "value is not a valid email address: only ASCII characters are allowed before the @"


def directory_with(email: str) -> Directory:
    profile = {"region": "emea", "contact_name": "Jonas", "contact_email": email}
    partner = {"id": "acme-consulting", "name": "Acme", "profiles": [profile]}
    return Directory.model_validate({"partners": [partner]})


@pytest.mark.parametrize("email", ["müller@lopez.example", "maría@lopez.example", "名@x.example"])
def test_a_non_ascii_local_part_is_refused_everywhere(email: str) -> None:
    assert refusal(with_value(("customer", "email"), email)) == (("customer", "email"), ASCII_ONLY)
    with pytest.raises(ValidationError, match=re.escape(ASCII_ONLY)):
        PartnerContact.model_validate({**ACME_BERLIN.model_dump(), "contact_email": email})
    with pytest.raises(ValidationError, match=re.escape(ASCII_ONLY)):
        directory_with(email)


def test_an_internationalized_domain_is_kept_in_its_ascii_form() -> None:
    rfi = Rfi.model_validate(with_value(("customer", "email"), "maria@Bücher-Lopez.example"))
    assert rfi.customer.email == "maria@xn--bcher-lopez-thb.example"
    partner = PartnerContact.model_validate(
        {**ACME_BERLIN.model_dump(), "contact_email": "berlin@acmé.example"}
    )
    assert partner.contact_email == "berlin@xn--acm-dma.example"
    looked_up = directory_with("berlin@acmé.example").contact_for(
        ContactLookup(partner_id="acme-consulting", region="emea")
    )
    assert looked_up.contact_email == "berlin@xn--acm-dma.example"
    # The addresses the emails go to: the lead to the partner, the reroute to the customer.
    referral = Referral(rfi, "acme-consulting")
    [lead] = referral.start(partner, NOW)
    [reroute] = act(referral, "no_thanks", None, NOW)
    assert (lead.to, reroute.to) == ("berlin@xn--acm-dma.example", rfi.customer.email)
    # Validating the stored form again changes nothing (activity inputs, query results).
    assert Rfi.model_validate(rfi.model_dump()) == rfi
