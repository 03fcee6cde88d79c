"""Decoding what other systems send the workflow: its input and the actions' arguments.

The workflow takes raw values and checks them here, so that a malformed start or action
gets one clear refusal instead of failing workflow tasks over and over; the lifecycle then
judges parsed actions only. Each step raises ``InvalidAction`` or ``ValueError`` with one
line that names the field at fault, never the value it held.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from temporalio.common import RawValue

from workflows.lifecycle import ActionRejected, Referral
from workflows.models import (
    CONTROLS_BUT_LINES,
    PAYLOAD_TYPES,
    Action,
    ActionPayload,
    ReferralInput,
)

# What the worker's codec makes of a payload it cannot decrypt (a retired key, no codec on
# the sender's side, a corrupted ciphertext): the workflow refuses it instead of failing
# its task, and so freezing the referral, forever.
UNDECRYPTABLE_ENCODING = "binary/undecryptable"
# No valid action comes near this (a reason is at most 4,000 characters): a larger payload
# is refused unread, so that a flood of huge signals costs the workflow next to nothing.
MAX_ACTION_BYTES = 64 * 1024


class InvalidAction(ValueError):
    """An action that cannot be read: an unknown name or a malformed payload."""


@dataclass(frozen=True)
class Undecryptable:
    """A value the worker could not decrypt; ``reason`` says why, never what it held."""

    reason: str


def describe(error: ValidationError, *, whole: str = "", limit: int | None = 10) -> str:
    """The first ``limit`` problems (None: all) as ``field.path: message``, joined by "; ".
    A problem with the value as a whole is named ``whole``, or given alone without it."""
    problems = []
    for detail in error.errors()[:limit]:
        where = ".".join(str(part) for part in detail["loc"]) or whole
        problems.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    return "; ".join(problems)


def parse_action(name: str) -> Action:
    try:
        return Action(name)
    except ValueError:
        raise InvalidAction("unknown action") from None


def parse_payload(action: Action, argument: Any) -> ActionPayload:
    """The action's typed payload; a missing argument is an empty one."""
    try:
        return PAYLOAD_TYPES[action].model_validate({} if argument is None else argument)
    except ValidationError as error:
        raise InvalidAction(f"invalid payload: {describe(error, limit=1)}") from None


def read_action(
    referral: Referral, name: str, argument: Any, *, judge: bool = True
) -> tuple[Action, ActionPayload]:
    """The action and its typed payload, or ``ActionRejected`` as the referral words it.
    With ``judge`` the state's refusal comes before the payload's (a closed referral says
    it is closed); without, the action waits to be judged when the referral has started."""
    try:
        action = parse_action(name)
        if judge:
            referral.check(action)
        return action, parse_payload(action, argument)
    except InvalidAction as error:
        raise ActionRejected(name, referral.status, str(error)) from None


def decode_action_argument(args: Sequence[RawValue]) -> Any:
    """The action's one JSON argument (None when absent), with exact decimals."""
    try:
        return _decoded(args)
    except ValueError as error:
        raise InvalidAction(f"invalid payload: {error}") from None


def _decoded(args: Sequence[RawValue]) -> Any:
    if len(args) > 1:
        raise ValueError(f"expected one JSON argument, got {len(args)}")
    if not args:
        return None
    payload = args[0].payload
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace")[:40]
    if encoding == "binary/null":
        return None
    if encoding == UNDECRYPTABLE_ENCODING:
        raise ValueError(f"cannot be decrypted: {payload.data.decode(errors='replace')[:200]}")
    if encoding != "json/plain":
        raise ValueError(f"expected a JSON argument, got encoding {encoding!r}")
    if len(payload.data) > MAX_ACTION_BYTES:
        raise ValueError(f"{len(payload.data)} bytes; at most {MAX_ACTION_BYTES}")
    try:
        return json.loads(payload.data, parse_float=Decimal)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not JSON: {type(error).__name__}") from None


def parse_referral_input(args: Sequence[Any]) -> ReferralInput:
    """The workflow's one argument, validated; raises ValueError naming what is wrong."""
    if len(args) != 1:
        raise ValueError(
            f'expected one JSON argument {{"rfi": ..., "partner_id": ...}}, got {len(args)}'
        )
    if isinstance(args[0], Undecryptable):
        raise ValueError(f"the input cannot be decrypted: {args[0].reason}")
    try:
        return ReferralInput.model_validate(args[0])
    except ValidationError as error:
        raise ValueError(f"invalid referral input: {describe(error, whole='input')}") from None


def parse_earlier_referral_input(args: Sequence[Any]) -> ReferralInput:
    """The input of a run started before text fields were strict, read as it was then:
    numbers in text fields as their text, control characters dropped. Only for replaying
    such runs; a new run with this input is refused."""
    data = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
    rfi = data.get("rfi") if data else None
    if data is None or not isinstance(rfi, dict):
        return parse_referral_input(args)
    rfi = {**rfi, **_as_text(rfi, ("location", "need", "company_size"))}
    if isinstance(rfi.get("customer"), dict):
        rfi["customer"] = {
            **rfi["customer"],
            **_as_text(rfi["customer"], ("name", "company", "phone")),
        }
    return parse_referral_input([{**data, "rfi": rfi}])


def _as_text(data: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    found = {f: data[f] for f in fields if isinstance(data.get(f), int | float | str)}
    return {f: CONTROLS_BUT_LINES.sub("", str(v)) for f, v in found.items()}
