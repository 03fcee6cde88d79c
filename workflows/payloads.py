"""Decoding what other systems send the workflow: its input and the actions' arguments.

The workflow takes raw values and checks them here, so that a malformed start or action
gets one clear refusal instead of failing workflow tasks over and over.
"""

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from temporalio.common import RawValue

from workflows.models import ReferralInput


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
    if encoding != "json/plain":
        raise ValueError(f"expected a JSON argument, got encoding {encoding!r}")
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
    try:
        return ReferralInput.model_validate(args[0])
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
            for e in error.errors()[:10]
        )
        raise ValueError(f"invalid referral input: {problems}") from None
