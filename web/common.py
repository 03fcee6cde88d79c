"""What the partner's pages share: who the service is, the page errors, the one way they
ask Temporal, the origin check of every form, and the forms themselves."""

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from temporalio.client import Client

from starter import referrals
from web.forms import EFFECTS, FIELDS, TITLES, read_form, reason_choices, refusal_field
from web.links import InvalidLink, LinkSigner
from web.services import Services, Unavailable
from workflows.lifecycle import allowed_actions
from workflows.models import Action, StatusView

log = logging.getLogger("web")
T = TypeVar("T")


class PageError(Exception):
    """An answer other than the page asked for: its status code, title and one sentence."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


async def services(request: Request) -> Services:
    """Async, as every dependency here: a plain function would cost a thread hop."""
    found: Services = request.app.state.services
    return found


def templates(request: Request) -> Jinja2Templates:
    found: Jinja2Templates = request.app.state.services.templates
    return found


ServicesDep = Annotated[Services, Depends(services)]


def granted(services: Services, verify: Callable[[LinkSigner], T], what: str) -> T:
    """What a signed token grants (``verify`` reads it with the service's keys), or 403:
    tampered with, expired, of another kind or signed with an unknown key. The log line
    names ``what`` and why, never the token."""
    invalid = PageError(403, "Link not valid", "This link is not valid (anymore).")
    if services.signer is None:
        log.info("%s refused: no REFERRALS_LINK_KEYS configured", what)
        raise invalid
    try:
        return verify(services.signer)
    except InvalidLink as refused:
        log.info("%s refused: %s", what, refused.reason)
        raise invalid from None


def check_origin(request: Request, services: Services) -> None:
    """A form posted from another site is refused (403): `Origin`, when sent, must be the
    service's public origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin != services.public_origin:
        log.info("form refused: posted from another origin")
        raise PageError(403, "Not allowed", "This form was sent from another site.")


async def temporal_call(
    services: Services, call: Callable[[Client], Awaitable[StatusView]]
) -> StatusView:
    """One call to Temporal, bounded in time; what cannot answer becomes a page. A refused
    action passes through; an unknown referral is not found."""
    try:
        return await services.ask_temporal(call)
    except referrals.ActionRefused:
        raise
    except referrals.ReferralError:
        raise PageError(404, "Referral not found", "There is no such referral.") from None
    except Unavailable:
        raise PageError(
            503, "Try again shortly", "The referral service cannot answer right now."
        ) from None


def taken(view: StatusView, action: Action) -> bool:
    """Each action leads out of one state, which is never entered again: taken once, ever."""
    return any(t.cause.kind == "action" and t.cause.name == action for t in view.transitions)


@dataclass(frozen=True)
class Outcome:
    """What a submitted form came to: `done`, `again` (taken before, nothing done twice),
    `invalid` (the action is still allowed; what was typed and what is wrong, by field) or
    `refused` (the referral no longer allows it)."""

    kind: Literal["done", "again", "invalid", "refused"]
    view: StatusView
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


async def submit(
    request: Request, services: Services, rfi_id: str, partner_id: str, action: Action, door: str
) -> Outcome:
    """Take ``action`` with the submitted form's fields, through the door ``door``, once."""
    form = await request.form()
    values = {name: value for name, value in form.items() if isinstance(value, str)}
    result = read_form(action, values)
    errors = result.errors
    if not errors:
        payload = {**result.payload, "via": {"door": door}}
        try:
            view = await temporal_call(
                services, lambda c: referrals.act(c, rfi_id, partner_id, action, payload)
            )
            return Outcome("done", view)
        except referrals.ActionRefused as refused:
            name = refusal_field(refused.reason, action)
            errors = {name: refused.reason.removeprefix("invalid payload: ")} if name else {}
    view = await temporal_call(services, lambda c: referrals.status(c, rfi_id, partner_id))
    if taken(view, action):
        return Outcome("again", view)
    if errors and action in allowed_actions(view.status):
        return Outcome("invalid", view, values, errors)
    return Outcome("refused", view)


def page_after(updated_at: datetime, workflow_id: str) -> str:
    """The opaque position of a page's last referral, for the next page's `after`."""
    raw = json.dumps([updated_at.isoformat(), workflow_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position(after: str) -> tuple[datetime, str]:
    """What `page_after` made; ValueError for anything else."""
    try:
        updated_at, workflow_id = json.loads(
            base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
        )
        return datetime.fromisoformat(updated_at), str(workflow_id)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("not a position this service gave") from None


@dataclass(frozen=True)
class Form:
    """What `_form.html` renders for one action: its fields, what was typed, the errors."""

    action: str
    title: str
    effect: str
    fields: tuple[str, ...]
    reason_codes: list[tuple[str, str]]
    values: dict[str, str]
    errors: dict[str, str]
    url: str = ""


def form_for(
    action: Action,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    url: str = "",
) -> Form:
    return Form(
        action=str(action),
        title=TITLES[action],
        effect=EFFECTS[action],
        fields=FIELDS[action],
        reason_codes=reason_choices(action),
        values=values or {},
        errors=errors or {},
        url=url,
    )
