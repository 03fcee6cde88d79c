"""The partner API, `/v1`, for a partner's CRM: its own referrals only, by its API key.

Another partner's referral is answered exactly like one that does not exist (404), so
that a key never learns what it may not see. Actions go through the same update the
`referrals` command sends; `Idempotency-Key` makes a retried action act once.
"""

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError

from archive.idempotency import Answered, InProgress, Mismatch
from archive.partner_keys import PartnerKey
from starter import referrals
from web.api_models import PartnerReferral, ReferralPage
from web.common import ServicesDep, page_after, position
from web.problems import Problem
from web.services import Services, Unavailable
from workflows.models import PAYLOAD_TYPES, Action, Id, Status, StatusView
from workflows.payloads import describe

router = APIRouter(prefix="/v1", tags=["referrals"])
bearer = HTTPBearer(auto_error=False, description="A partner API key: `rpk_...`")

MAX_PAGE = 100
PROBLEM = {"content": {"application/problem+json": {}}, "description": "Problem details"}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: PROBLEM,
    404: PROBLEM,
    413: PROBLEM,
    422: PROBLEM,
    429: PROBLEM,
    503: PROBLEM,
}


async def partner_key(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> PartnerKey:
    """The caller's key, or 401: missing, malformed, unknown or revoked."""
    unauthorized = Problem(
        401,
        "Unauthorized",
        "send a live partner API key: Authorization: Bearer rpk_...",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None:
        raise unauthorized
    try:
        key = await services.partner_key(credentials.credentials)
    except Exception:  # the archive is down: say so, not "unauthorized"
        raise Problem(503, "Unavailable", "the archive cannot answer right now") from None
    if key is None:
        raise unauthorized
    return key


KeyDep = Annotated[PartnerKey, Depends(partner_key)]


@router.get("/referrals", response_model=ReferralPage, responses=ERRORS)
async def list_referrals(
    key: KeyDep,
    services: ServicesDep,
    status: Annotated[Status | None, Query(description="Only referrals in this status.")] = None,
    updated_since: Annotated[
        datetime | None, Query(description="Only referrals changed at or after this time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    after: Annotated[str | None, Query(description="The `next` of the previous page.")] = None,
) -> ReferralPage:
    """The key's partner's referrals, newest change first, as the archive last recorded them
    (at most a second behind each transition)."""
    if updated_since is not None and updated_since.tzinfo is None:
        raise Problem(422, "Invalid request", "updated_since needs an offset (Z or +02:00)")
    try:
        start = position(after) if after else None
    except ValueError:
        raise Problem(422, "Invalid request", "after is not a cursor this API gave") from None
    rows = await _archive(
        services.archive_store.partner_referrals,
        key.partner_id,
        statuses=None if status is None else [str(status)],
        updated_since=updated_since,
        after=start,
        limit=limit + 1,
    )
    items = [PartnerReferral.of_row(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return ReferralPage(
        items=items, next=page_after(last.updated_at, last.workflow_id) if last else None
    )


@router.get("/referrals/{rfi_id}", response_model=PartnerReferral, responses=ERRORS)
async def get_referral(rfi_id: str, key: KeyDep, services: ServicesDep) -> PartnerReferral:
    """The key's partner's referral of this RFI, live (the archive's once Temporal has
    forgotten it)."""
    _check_id(rfi_id)
    try:
        view = await _temporal(services, lambda c: referrals.status(c, rfi_id, key.partner_id))
    except referrals.ReferralError:
        row = await _archive(services.archive_store.find, rfi_id, key.partner_id)
        if row is None:
            raise _not_found(rfi_id) from None
        return PartnerReferral.of_row(row)
    return PartnerReferral.of_view(view)


@router.post(
    "/referrals/{rfi_id}/actions/{action}",
    response_model=PartnerReferral,
    responses={**ERRORS, 409: PROBLEM},
)
async def act(
    rfi_id: str,
    action: Action,
    request: Request,
    key: KeyDep,
    services: ServicesDep,
    payload: Annotated[
        dict[str, Any] | None,
        Body(
            description="The action's payload, as in the Temporal contract: none for "
            "`interested`; `reason`, `reason_code` for `no_thanks`, `decline`, `lost`; "
            "`estimated_deal_value`, `currency`, `estimated_close_date` for `accept`; "
            "`final_deal_value` for `won`."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Acts once for the same key and body, 24 hours."),
    ] = None,
) -> Response:
    """Take the action; the new view. A retry with the same `Idempotency-Key` and body gets
    the first answer again."""
    _check_id(rfi_id)
    body = await request.body()
    if idempotency_key is None:
        return await _act(services, key, rfi_id, action, payload)
    fingerprint = hashlib.sha256(f"{rfi_id}\n{action}\n".encode() + body).hexdigest()
    store = services.idempotency
    claim = await _archive(store.begin, key.id, idempotency_key, fingerprint, datetime.now(UTC))
    match claim:
        case Answered(status=status, body=stored):
            return Response(stored, status_code=status, media_type=_media(status))
        case Mismatch():
            raise Problem(
                422,
                "Idempotency-Key reused",
                "this Idempotency-Key was used for another request in the last 24 hours",
            )
        case InProgress():
            raise Problem(
                409,
                "Request in progress",
                "the first request with this Idempotency-Key is still being answered",
                headers={"Retry-After": "1"},
            )
    try:
        answer = await _act(services, key, rfi_id, action, payload)
    except Problem as problem:
        if problem.status >= 500:
            await _archive(store.abandon, key.id, idempotency_key)
            raise
        answer = problem.response()
    except BaseException:
        await _archive(store.abandon, key.id, idempotency_key)
        raise
    await _archive(store.finish, key.id, idempotency_key, answer.status_code, bytes(answer.body))
    return answer


async def _act(
    services: Services, key: PartnerKey, rfi_id: str, action: Action, payload: Any
) -> Response:
    if isinstance(payload, dict) and "via" in payload:
        raise Problem(
            422,
            "Invalid payload",
            "via: set by the service, not the caller",
            extensions={"errors": [{"field": "via", "message": "not allowed"}]},
        )
    try:
        PAYLOAD_TYPES[action].model_validate({} if payload is None else payload)
    except ValidationError as error:
        detail = describe(error, limit=None)
        raise Problem(
            422, "Invalid payload", detail, extensions={"errors": _fields(error)}
        ) from None
    via = {"door": "api", "api_key_id": key.id}
    try:
        view = await _temporal(
            services,
            lambda c: referrals.act(
                c, rfi_id, key.partner_id, action, {**(payload or {}), "via": via}
            ),
        )
    except referrals.ActionRefused as refused:
        if refused.reason.startswith("invalid payload"):
            detail = refused.reason.removeprefix("invalid payload: ")
            raise Problem(422, "Invalid payload", detail) from None
        raise Problem(
            409,
            "Action not allowed",
            f"{action} is not allowed: the referral is {refused.status}",
            extensions={
                "referral_status": refused.status,
                "allowed_actions": refused.allowed_actions,
            },
        ) from None
    except referrals.ReferralError:
        raise _not_found(rfi_id) from None
    body = PartnerReferral.of_view(view).model_dump(mode="json")
    return JSONResponse(body)


async def _temporal(services: Services, call: Any) -> StatusView:
    try:
        return await services.ask_temporal(call)
    except Unavailable:
        raise Problem(
            503, "Unavailable", "Temporal cannot answer right now", headers={"Retry-After": "5"}
        ) from None


async def _archive(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except LookupError:
        raise
    except Exception:
        raise Problem(503, "Unavailable", "the archive cannot answer right now") from None


def _not_found(rfi_id: str) -> Problem:
    return Problem(404, "Not found", f"no referral of RFI {rfi_id} for this partner")


IDS = TypeAdapter(Id)


def _check_id(rfi_id: str) -> None:
    try:
        IDS.validate_python(rfi_id)
    except ValidationError:
        raise _not_found(rfi_id[:64]) from None


def _fields(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "payload", "message": e["msg"]}
        for e in error.errors()
    ]


def _media(status: int) -> str:
    return "application/json" if status < 400 else "application/problem+json"
