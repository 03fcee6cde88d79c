"""The wire models (workflow input, deadlines) and the decoding of raw action arguments."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.converter import default

from tests.factories import SAMPLES, make_rfi, rfi_data
from workflows.models import Deadlines, ReferralInput, Rfi
from workflows.payloads import decode_action_argument

# --- Rfi -----------------------------------------------------------------------------------


def test_sample_rfi_is_valid_once_received() -> None:
    data = json.loads((SAMPLES / "rfi.json").read_text())
    with pytest.raises(ValidationError, match="received_at"):
        Rfi.model_validate(data)  # the workflow's input always says when
    rfi = Rfi.model_validate({**data, "received_at": "2026-11-25T09:00:00Z"})
    assert rfi.id == "rfi-1001"
    assert rfi.received_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert rfi.region == "emea"
    assert rfi.location == "Berlin"
    assert rfi.company_size == "200-500"
    assert rfi.customer.name == "Maria Lopez"
    assert rfi.customer.email == "maria.lopez@lopez-logistics.example"
    assert rfi.customer.phone == "+49 30 1234567"
    assert rfi.deadlines == Deadlines(
        respond_within=timedelta(hours=72),
        decide_within=timedelta(days=7),
        remind_after=timedelta(hours=24),
    )


@pytest.mark.parametrize(
    "received_at",
    ["2026-11-25T09:00:00Z", "2026-11-25T11:00:00+02:00", "2026-11-25T04:00:00-05:00"],
)
def test_received_at_offsets_are_normalised_to_utc(received_at: str) -> None:
    rfi = make_rfi(received_at=received_at)
    assert rfi.received_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert rfi.received_at.utcoffset() == timedelta(0)
    assert rfi.model_dump(mode="json")["received_at"] == "2026-11-25T09:00:00Z"


@pytest.mark.parametrize("received_at", ["2026-11-25T09:00:00", datetime(2026, 11, 25, 9, 0)])
def test_naive_received_at_is_rejected(received_at: Any) -> None:
    with pytest.raises(ValidationError, match="received_at"):
        make_rfi(received_at=received_at)


@pytest.mark.parametrize("rfi_id", ["rfi-1001", "A.b_c-9", "x", "a" * 64])
def test_good_ids(rfi_id: str) -> None:
    assert make_rfi(id=rfi_id).id == rfi_id


BAD_IDS = ["", "a" * 65, "rfi 1001", 'rfi"1001', "rfi'1001", "rfi/1001", "rfi-1001\n", "rfí-1"]


@pytest.mark.parametrize("rfi_id", BAD_IDS)
def test_bad_rfi_ids_are_rejected(rfi_id: str) -> None:
    with pytest.raises(ValidationError, match="id"):
        make_rfi(id=rfi_id)


@pytest.mark.parametrize("region", ["", "emea/berlin", "em ea"])
def test_bad_regions_are_rejected(region: str) -> None:
    with pytest.raises(ValidationError, match="region"):
        make_rfi(region=region)


@pytest.mark.parametrize("partner_id", BAD_IDS)
def test_bad_partner_ids_are_rejected(partner_id: str) -> None:
    with pytest.raises(ValidationError, match="partner_id"):
        ReferralInput.model_validate({"rfi": rfi_data(), "partner_id": partner_id})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="priority"):
        make_rfi(priority="high")
    data = rfi_data()
    data["customer"]["fax"] = "+49 30 7654321"
    with pytest.raises(ValidationError, match="fax"):
        Rfi.model_validate(data)
    with pytest.raises(ValidationError, match="remind_twice"):
        make_rfi(deadlines={"remind_twice": "PT1H"})
    with pytest.raises(ValidationError, match="priority"):
        ReferralInput.model_validate({"rfi": rfi_data(), "partner_id": "acme", "priority": 1})


@pytest.mark.parametrize(
    "email", ["not-an-email", "maria@", "@example.com", "maria lopez@x.example"]
)
def test_bad_customer_email_is_rejected(email: str) -> None:
    data = rfi_data()
    data["customer"]["email"] = email
    with pytest.raises(ValidationError, match="email"):
        Rfi.model_validate(data)


@pytest.mark.parametrize("field", ["need", "company_size", "customer", "received_at", "region"])
def test_required_fields(field: str) -> None:
    data = rfi_data()
    del data[field]
    with pytest.raises(ValidationError, match=field):
        Rfi.model_validate(data)


def test_company_size_refuses_a_number() -> None:
    with pytest.raises(ValidationError, match="company_size\n  Input should be a valid string"):
        make_rfi(company_size=250)  # text only: 1e400 would have become "inf"


# --- Deadlines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("respond_within", "PT72H", timedelta(hours=72)),
        ("respond_within", "PT2H", timedelta(hours=2)),
        ("decide_within", "P7D", timedelta(days=7)),
        ("decide_within", "P1D", timedelta(days=1)),
        ("remind_after", "PT1H", timedelta(hours=1)),
        ("remind_after", "PT30M", timedelta(minutes=30)),
        ("remind_after", "P1DT2H", timedelta(hours=26)),
    ],
)
def test_deadlines_parse_iso_8601_durations(field: str, text: str, expected: timedelta) -> None:
    rfi = make_rfi(deadlines={field: text})
    assert getattr(rfi.deadlines, field) == expected


def test_unset_deadlines_keep_their_defaults() -> None:
    rfi = make_rfi(deadlines={"respond_within": "PT2H"})
    assert rfi.deadlines.respond_within == timedelta(hours=2)
    assert rfi.deadlines.decide_within == timedelta(days=7)
    assert rfi.deadlines.remind_after == timedelta(hours=24)


@pytest.mark.parametrize("field", ["respond_within", "decide_within", "remind_after"])
@pytest.mark.parametrize("text", ["PT0S", "P0D", "-PT1H", "-P7D", 0, "soon"])
def test_zero_negative_or_garbled_deadlines_are_rejected(field: str, text: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        make_rfi(deadlines={field: text})


# --- ReferralInput -------------------------------------------------------------------------


def test_workflow_id() -> None:
    rfi = make_rfi(id="rfi-1001")
    referral = ReferralInput(rfi=rfi, partner_id="acme-consulting")
    assert referral.workflow_id == "referral:rfi-1001:acme-consulting"


def test_referral_input_round_trips_through_json() -> None:
    referral = ReferralInput.model_validate({"rfi": rfi_data(), "partner_id": "globex"})
    dumped = referral.model_dump(mode="json")
    assert set(dumped) == {"rfi", "partner_id"}
    assert ReferralInput.model_validate_json(json.dumps(dumped)) == referral


# --- decode_action_argument ----------------------------------------------------------------


def raw(data: bytes, encoding: bytes = b"json/plain") -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


def converted(value: Any) -> RawValue:
    [payload] = default().payload_converter.to_payloads([value])
    return RawValue(payload)


def test_no_argument_is_none() -> None:
    assert decode_action_argument([]) is None


def test_null_argument_is_none() -> None:
    argument = converted(None)
    assert argument.payload.metadata["encoding"] == b"binary/null"
    assert decode_action_argument([argument]) is None


def test_json_object_is_decoded() -> None:
    argument = converted({"reason": "Fully booked", "count": 3})
    assert decode_action_argument([argument]) == {"reason": "Fully booked", "count": 3}


def test_json_float_is_an_exact_decimal() -> None:
    decoded = decode_action_argument([converted({"estimated_deal_value": 1234.56})])
    value = decoded["estimated_deal_value"]
    assert isinstance(value, Decimal)
    assert value == Decimal("1234.56")
    assert str(value) == "1234.56"


@pytest.mark.parametrize(
    "number", ["12345678901234.5678", "0.1", "1234567.8901", "99999999999999999.99"]
)
def test_json_numbers_beyond_float_precision_stay_exact(number: str) -> None:
    decoded = decode_action_argument([raw(b'{"final_deal_value": ' + number.encode() + b"}")])
    assert decoded == {"final_deal_value": Decimal(number)}
    assert str(decoded["final_deal_value"]) == number


def test_json_integers_stay_integers() -> None:
    assert decode_action_argument([raw(b"25000")]) == 25000


@pytest.mark.parametrize("value", ["busy", [1, 2]])
def test_json_non_objects_are_passed_on(value: Any) -> None:
    # The lifecycle, not the decoder, refuses them: they must reach it unchanged.
    assert decode_action_argument([converted(value)]) == value


def test_two_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="got 2"):
        decode_action_argument([converted({"reason": "a"}), converted({"reason": "b"})])


@pytest.mark.parametrize(
    "argument",
    [
        pytest.param(converted(b"\x00\x01"), id="binary/plain"),
        pytest.param(raw(b"{}", b"json/protobuf"), id="json/protobuf"),
        pytest.param(RawValue(Payload(data=b"{}")), id="no-encoding"),
    ],
)
def test_non_json_encoding_is_refused(argument: RawValue) -> None:
    with pytest.raises(ValueError, match="expected a JSON argument"):
        decode_action_argument([argument])
