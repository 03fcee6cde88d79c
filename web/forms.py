"""What each action's form asks for, and the action's payload read from a submitted form.

The payload is checked with the same pydantic types the workflow checks it with, so that a
form refused here would have been refused by the referral, field by field.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from workflows.models import PAYLOAD_TYPES, Action, DeclineReason, LossReason

REASON_FIELDS = ("reason_code", "reason")
FIELDS: Mapping[Action, tuple[str, ...]] = {
    Action.INTERESTED: (),
    Action.NO_THANKS: REASON_FIELDS,
    Action.ACCEPT: ("estimated_deal_value", "currency", "estimated_close_date"),
    Action.DECLINE: REASON_FIELDS,
    Action.WON: ("final_deal_value",),
    Action.LOST: REASON_FIELDS,
}
REASON_CODES: Mapping[Action, type[StrEnum]] = {
    Action.NO_THANKS: DeclineReason,
    Action.DECLINE: DeclineReason,
    Action.LOST: LossReason,
}
# What the page says each action does, in the partner's words.
EFFECTS: Mapping[Action, str] = {
    Action.INTERESTED: "You will see the customer's contact details and can then accept or "
    "decline with an estimated deal.",
    Action.NO_THANKS: "The customer will be asked to choose another partner.",
    Action.ACCEPT: "You commit to an estimated deal; report it won or lost later.",
    Action.DECLINE: "The customer will be asked to choose another partner.",
    Action.WON: "The deal is recorded as won.",
    Action.LOST: "The deal is recorded as lost.",
}
TITLES: Mapping[Action, str] = {
    Action.INTERESTED: "I'm interested",
    Action.NO_THANKS: "No thanks",
    Action.ACCEPT: "Accept",
    Action.DECLINE: "Decline",
    Action.WON: "Report the deal won",
    Action.LOST: "Report the deal lost",
}


@dataclass(frozen=True)
class FormResult:
    payload: dict[str, str]
    errors: dict[str, str]  # field name to message; "form" for the form as a whole


def reason_choices(action: Action) -> list[tuple[str, str]]:
    """(code, label) for the action's reason codes; none for actions that take no reason."""
    codes = REASON_CODES.get(action)
    return [(str(code), str(code).replace("_", " ").capitalize()) for code in codes or ()]


def read_form(action: Action, form: Mapping[str, str]) -> FormResult:
    """The action's payload from the form's fields (blank ones left out) and what is wrong
    with it, by field."""
    payload = {name: form[name].strip() for name in FIELDS[action] if form.get(name, "").strip()}
    if "currency" in payload:
        payload["currency"] = payload["currency"].upper()
    try:
        PAYLOAD_TYPES[action].model_validate(payload)
    except ValidationError as error:
        return FormResult(payload, field_errors(error, FIELDS[action]))
    return FormResult(payload, {})


def field_errors(error: ValidationError, fields: tuple[str, ...]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for detail in error.errors():
        where = str(detail["loc"][0]) if detail["loc"] else ""
        # A rule over several fields (`other` needs a reason) belongs to the last of them.
        name = where if where in fields else (fields[-1] if fields else "form")
        message = str(detail["msg"]).removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def refusal_field(reason: str, action: Action) -> str | None:
    """The field a referral's payload refusal names (``invalid payload: estimated_close_date
    is in the past``), if it names one of the action's fields."""
    detail = reason.removeprefix("invalid payload: ")
    if detail == reason:
        return None
    first = detail.split(" ", 1)[0].rstrip(":")
    return first if first in FIELDS[action] else "form"
