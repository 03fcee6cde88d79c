"""The wire models (workflow input, deadlines, action payloads, the status view, money and
times as JSON writes them) and the decoding of raw action arguments."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.converter import default

from tests.factories import ACCEPT, RECEIVED_AT, SAMPLES, act, make_rfi, reach, rfi_data, started
from workflows.lifecycle import ActionRejected
from workflows.models import Action, Deadlines, ReferralInput, Rfi, Status
from workflows.payloads import InvalidAction, decode_action_argument, parse_action, parse_payload

T0 = RECEIVED_AT  # make_rfi's received_at
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

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


# --- Action payloads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**ACCEPT, "currency": "XXQ"}, "currency"),
        ({"currency": "EUR", "estimated_close_date": "2027-03-31"}, "estimated_deal_value"),
        ({**ACCEPT, "estimated_close_date": "01/02/2027"}, "estimated_close_date"),
    ],
)
def test_payload_rejection_names_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidAction) as caught:
        parse_payload(Action.ACCEPT, payload)
    assert str(caught.value).startswith(f"invalid payload: {field}: ")


@pytest.mark.parametrize("close_date", ["01/02/2027", "2027-3-31", 4102444800, 20270331])
def test_close_date_must_be_written_yyyy_mm_dd(close_date: Any) -> None:
    with pytest.raises(InvalidAction, match="expected a date as YYYY-MM-DD"):
        parse_payload(Action.ACCEPT, {**ACCEPT, "estimated_close_date": close_date})


# Digits of other scripts: Arabic-Indic, Devanagari, fullwidth, Eastern Arabic, mixed.
@pytest.mark.parametrize(
    "amount",
    [
        "\u0661\u0662\u0663",
        "\u0967\u0968\u0969",
        "\uff11\uff12\uff13",
        "\u06f1\u06f2.\u06f5",
        "12\u0663",
    ],
)
def test_money_takes_ascii_digits_only(amount: str) -> None:
    with pytest.raises(InvalidAction, match=r"a decimal string like 1250\.50"):
        parse_payload(Action.ACCEPT, {**ACCEPT, "estimated_deal_value": amount})
    with pytest.raises(InvalidAction, match="final_deal_value"):
        parse_payload(Action.WON, {"final_deal_value": amount})


@pytest.mark.parametrize("final", [0, "-1", "abc"])
def test_bad_won_payload_is_rejected(final: Any) -> None:
    with pytest.raises(InvalidAction, match="final_deal_value") as caught:
        parse_payload(Action.WON, {"final_deal_value": final})
    assert str(caught.value).startswith("invalid payload: final_deal_value: ")


def test_an_unknown_action_is_named_so() -> None:
    with pytest.raises(InvalidAction, match=r"^unknown action$"):
        parse_action("maybe")
    assert parse_action("no_thanks") is Action.NO_THANKS


# --- Money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1234567.8901"), "1234567.8901"),
        ("1234567.89", "1234567.89"),
        ("0.0001", "0.0001"),
        (25000, "25000"),
    ],
)
def test_deal_value_kept_exact(value: Any, expected: str) -> None:
    referral = reach(Status.EVALUATING)
    act(referral, "accept", {**ACCEPT, "estimated_deal_value": value}, T0 + DAY)
    deal = referral.view().deal
    assert deal is not None
    assert deal.estimated_deal_value == Decimal(expected)
    assert str(deal.estimated_deal_value) == expected
    assert referral.view().model_dump(mode="json")["deal"]["estimated_deal_value"] == expected


def test_decoded_json_numbers_keep_money_exact() -> None:
    referral = reach(Status.EVALUATING)
    accept = decode_action_argument(
        [
            raw(
                b'{"estimated_deal_value": 12345678901234.5678, "currency": "USD",'
                b' "estimated_close_date": "2027-03-31"}'
            )
        ]
    )
    act(referral, "accept", accept, T0 + DAY)
    won = decode_action_argument([raw(b'{"final_deal_value": 1234.56}')])
    act(referral, "won", won, T0 + 2 * DAY)

    dumped = referral.view().model_dump(mode="json")["deal"]
    assert dumped == {
        "estimated_deal_value": "12345678901234.5678",
        "currency": "USD",
        "estimated_close_date": "2027-03-31",
        "final_deal_value": "1234.56",
    }


def test_too_many_decimal_places_are_rejected_not_rounded() -> None:
    referral = reach(Status.EVALUATING)
    with pytest.raises(ActionRejected, match="estimated_deal_value"):
        act(referral, "accept", {**ACCEPT, "estimated_deal_value": "1.00001"}, T0 + DAY)


def test_money_is_written_as_plain_decimal_text() -> None:
    referral = reach(Status.EVALUATING)
    act(referral, "accept", {**ACCEPT, "estimated_deal_value": Decimal("2.5E+4")}, T0 + DAY)
    deal = referral.view().model_dump(mode="json")["deal"]
    assert deal["estimated_deal_value"] == "25000"


# --- The status view ----------------------------------------------------------------------


def test_view_keys_are_the_contract() -> None:
    referral = reach(Status.NEGOTIATING)
    referral.reject("lost", T0 + DAY, "something")
    view = referral.view().model_dump(mode="json")

    assert set(view) == {
        "rfi_id",
        "partner_id",
        "status",
        "region",
        "location",
        "received_at",
        "started_at",
        "first_response_at",
        "deadline",
        "overview",
        "customer",
        "deal",
        "transitions",
        "rejected_actions",
        "emails",
    }
    assert view["rfi_id"] == referral.rfi.id
    assert view["partner_id"] == "acme-consulting"
    assert view["status"] == "Negotiating"
    assert (view["region"], view["location"]) == ("emea", "Berlin")
    assert view["overview"] == {
        "need": "Migrate our on-premise ERP to the cloud within six months",
        "company_size": "200-500",
        "region": "emea",
        "location": "Berlin",
    }
    assert set(view["customer"]) == {"name", "company", "email", "phone"}
    assert set(view["deal"]) == {
        "estimated_deal_value",
        "currency",
        "estimated_close_date",
        "final_deal_value",
    }
    for transition in view["transitions"]:
        assert set(transition) == {
            "seq",
            "from",
            "to",
            "effective_at",
            "processed_at",
            "cause",
            "reason",
            "reason_code",
            "via",
        }
        assert set(transition["cause"]) == {"kind", "name"}
    # Actions a backend sends through Temporal come through the door `temporal`.
    assert view["transitions"][0]["via"] == {"door": "temporal", "api_key_id": None}
    assert view["transitions"][0]["from"] == "New"
    assert view["transitions"][0]["to"] == "Evaluating"
    assert view["transitions"][0]["cause"] == {"kind": "action", "name": "interested"}
    [rejected] = view["rejected_actions"]
    assert set(rejected) == {"action", "at", "status", "reason"}
    for email in view["emails"]:
        assert set(email) == {"id", "kind", "to", "outcome", "error"}
    assert [email["kind"] for email in view["emails"]] == ["lead", "details"]
    assert view["emails"][0]["outcome"] == "pending"

    assert "from_" not in referral.view().model_dump_json()
    assert json.loads(referral.view().model_dump_json()) == view


def test_deadline_in_view() -> None:
    referral, _ = started()
    assert referral.view().model_dump(mode="json")["deadline"] == {
        "kind": "respond",
        "due_at": "2026-11-28T09:00:00Z",
    }
    act(referral, "interested", None, T0 + HOUR)
    assert referral.view().model_dump(mode="json")["deadline"] == {
        "kind": "decide",
        "due_at": "2026-12-02T10:00:00Z",
    }


def test_times_are_written_in_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    rfi = make_rfi(received_at="2026-11-25T11:00:00+02:00")
    referral, _ = started(rfi, at=datetime(2026, 11, 25, 12, 0, tzinfo=plus_two))
    act(referral, "interested", None, datetime(2026, 11, 25, 14, 30, tzinfo=plus_two))
    referral.reject("won", datetime(2026, 11, 25, 15, 0, tzinfo=plus_two), "not allowed")
    referral.fire_due(datetime(2026, 12, 2, 14, 30, tzinfo=plus_two))

    view = referral.view().model_dump(mode="json")

    assert view["received_at"] == "2026-11-25T09:00:00Z"
    assert view["first_response_at"] == "2026-11-25T12:30:00Z"
    interested, expired = view["transitions"]
    assert interested["effective_at"] == "2026-11-25T12:30:00Z"
    assert interested["processed_at"] == "2026-11-25T12:30:00Z"
    assert expired["to"] == "Expired"
    assert expired["effective_at"] == "2026-12-02T12:30:00Z"
    assert expired["processed_at"] == "2026-12-02T12:30:00Z"
    assert view["rejected_actions"][0]["at"] == "2026-11-25T13:00:00Z"


def test_times_in_utc_with_z_while_new() -> None:
    referral, _ = started(make_rfi(received_at="2026-11-25T11:00:00+02:00"))
    view = referral.view().model_dump(mode="json")
    assert view["received_at"] == "2026-11-25T09:00:00Z"
    assert view["deadline"]["due_at"] == "2026-11-28T09:00:00Z"


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
