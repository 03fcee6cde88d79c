"""Decoding what other systems send the workflow: its input and the actions' arguments.

The workflow takes raw values and checks them here, so that a malformed start or action
gets one clear refusal instead of failing workflow tasks over and over.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from temporalio.common import RawValue

from workflows.models import CONTROLS_BUT_LINES, ReferralInput

# What the worker's codec makes of a payload it cannot decrypt (a retired key, no codec on
# the sender's side, a corrupted ciphertext): the workflow refuses it instead of failing
# its task, and so freezing the referral, forever.
UNDECRYPTABLE_ENCODING = "binary/undecryptable"
# No valid action comes near this (a reason is at most 4,000 characters): a larger payload
# is refused unread, so that a flood of huge signals costs the workflow next to nothing.
MAX_ACTION_BYTES = 64 * 1024


@dataclass(frozen=True)
class Undecryptable:
    """A value the worker could not decrypt; ``reason`` says why, never what it held."""

    reason: str


def decode_action_argument(args: Sequence[RawValue]) -> Any:
    """The action's one JSON argument (None when absent), with exact decimals."""
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
            for e in error.errors()[:10]
        )
        raise ValueError(f"invalid referral input: {problems}") from None


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
