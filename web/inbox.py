"""The partner's inbox: a contact signs in by email and sees its partner's referrals, open
ones first by due time, closed ones from the archive, and answers them.

Sign-in: the contact enters its address; when it is a contact in the partner directory, a
sign-in link (15 minutes, single use) is emailed to it, and the page says the same whether
or not it is. The link's GET shows a button and never signs in (mail scanners fetch every
link); its POST sets the session cookie, which names one partner only (`HttpOnly`,
`SameSite=Lax`, `Secure` on https). An email's action link never grants the inbox.
"""

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from activities.rendering import RenderedEmail
from starter import referrals
from web.api_models import PartnerReferral
from web.common import (
    PageError,
    ServicesDep,
    check_origin,
    form_for,
    granted,
    page_after,
    position,
    submit,
    templates,
    temporal_call,
)
from web.forms import TITLES
from web.links import SESSION_LIFETIME, InvalidLink, SignIn
from web.services import Services
from workflows.lifecycle import CLOSED_STATUSES, allowed_actions
from workflows.models import Action, Status, StatusView

log = logging.getLogger("web")
router = APIRouter(prefix="/inbox", include_in_schema=False)

SESSION_COOKIE = "referrals_session"
CLOSED_PAGE = 20
CLOSED = [str(status) for status in CLOSED_STATUSES]


async def signed_in(request: Request, services: ServicesDep) -> str | None:
    """The partner the session cookie names, if it is valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or services.signer is None:
        return None
    try:
        return services.signer.verify_session(token).partner_id
    except InvalidLink:
        return None


PartnerDep = Annotated[str | None, Depends(signed_in)]


@router.get("", response_class=HTMLResponse)
async def inbox(
    request: Request, services: ServicesDep, partner: PartnerDep, after: str | None = None
) -> Response:
    if partner is None:
        return _page(request, "sign_in.html", {"sent": False, "email": None, "error": None})
    try:
        start = position(after) if after else None
    except ValueError:
        raise PageError(404, "Page not found", "That page of the inbox does not exist.") from None
    store = services.archive_store
    try:
        open_rows, closed_rows = await asyncio.gather(
            asyncio.to_thread(store.partner_open, partner),
            asyncio.to_thread(
                store.partner_referrals,
                partner,
                statuses=CLOSED,
                after=start,
                limit=CLOSED_PAGE + 1,
            ),
        )
    except Exception:
        log.warning("the archive did not answer the inbox")
        raise PageError(
            503, "Try again shortly", "The referral service cannot answer right now."
        ) from None
    now = datetime.now(UTC)
    last = closed_rows[CLOSED_PAGE - 1] if len(closed_rows) > CLOSED_PAGE else None
    context = {
        "partner_name": services.partner_name(partner),
        "open": [
            {
                "rfi_id": row.rfi_id,
                "status": row.status,
                "region": row.region,
                "location": row.location,
                "need": _short(row.need),
                "due_at": row.due_at,
                "allowed": [str(a) for a in allowed_actions(Status(row.status))],
            }
            for row in open_rows
        ],
        "closed": closed_rows[:CLOSED_PAGE],
        "next": page_after(last.updated_at, last.workflow_id) if last else None,
        "after": after,
        "now": now,
        "titles": {str(a): t for a, t in TITLES.items()},
        "hours_left": lambda due: _left(due - now),
    }
    return _page(request, "inbox.html", context)


@router.post("/sign-in", response_class=HTMLResponse)
async def request_sign_in(
    request: Request, services: ServicesDep, background: BackgroundTasks
) -> HTMLResponse:
    check_origin(request, services)
    form = await request.form()
    email = str(form.get("email", "")).strip()
    if "@" not in email or len(email) > 320:
        context = {"sent": False, "email": email, "error": "Enter an email address."}
        return _page(request, "sign_in.html", context, status=422)
    # Looked up and sent after the answer: the page, and how long it takes, are the same
    # whether or not the address is a contact's.
    background.add_task(_send_sign_in, services, email)
    return _page(request, "sign_in.html", {"sent": True, "email": email, "error": None})


@router.get("/sign-in/{token}", response_class=HTMLResponse)
async def confirm_sign_in(token: str, request: Request, services: ServicesDep) -> HTMLResponse:
    link = _sign_in_link(services, token)
    context = {"partner_name": services.partner_name(link.partner_id)}
    return _page(request, "sign_in_confirm.html", context)


@router.post("/sign-in/{token}")
async def sign_in(token: str, request: Request, services: ServicesDep) -> Response:
    check_origin(request, services)
    link = _sign_in_link(services, token)
    try:
        first = await asyncio.to_thread(
            services.sign_ins.use, link.token_id, link.expires_at, datetime.now(UTC)
        )
    except Exception:
        raise PageError(
            503, "Try again shortly", "The referral service cannot answer right now."
        ) from None
    if not first:
        log.info("sign-in link refused: already used")
        raise PageError(403, "Link already used", "This sign-in link was used already.")
    assert services.signer is not None  # _sign_in_link checked it
    response = RedirectResponse("/inbox", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        services.signer.sign_session(link.partner_id, datetime.now(UTC)),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=services.settings.public_url.startswith("https://"),
    )
    log.info("signed in to the inbox of partner %s", link.partner_id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, services: ServicesDep) -> Response:
    check_origin(request, services)
    response = RedirectResponse("/inbox", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/referrals/{rfi_id}", response_class=HTMLResponse)
async def referral(
    rfi_id: str, request: Request, services: ServicesDep, partner: PartnerDep
) -> Response:
    if partner is None:
        return RedirectResponse("/inbox", status_code=303)
    try:
        view = await _view(services, rfi_id, partner)
    except PageError as error:  # Temporal may have forgotten a closed one: the archive has it
        row = await asyncio.to_thread(services.archive_store.find, rfi_id, partner)
        if error.status_code != 404 or row is None:
            raise
        context = {"view": PartnerReferral.of_row(row), "forms": [], "notice": None}
        return _page(request, "inbox_referral.html", {**context, "now": datetime.now(UTC)})
    return _referral_page(request, view)


@router.post("/referrals/{rfi_id}/actions/{action}", response_class=HTMLResponse)
async def act(
    rfi_id: str, action: Action, request: Request, services: ServicesDep, partner: PartnerDep
) -> Response:
    check_origin(request, services)
    if partner is None:
        return RedirectResponse("/inbox", status_code=303)
    outcome = await submit(request, services, rfi_id, partner, action, door="inbox")
    view, title = outcome.view, TITLES[action]
    match outcome.kind:
        case "done":
            notice = f'"{title}" is recorded. The referral is now {view.status}.'
            return _referral_page(request, view, notice=notice)
        case "again":
            notice = f'"{title}" was already taken; nothing was done twice.'
            return _referral_page(request, view, notice=notice)
        case "invalid":
            errors = outcome.errors
            return _referral_page(request, view, action, outcome.values, errors, status=422)
        case _:  # "refused"
            notice = f'"{title}" is not possible any more: the referral is {view.status}.'
            return _referral_page(request, view, notice=notice, status=409)


def _referral_page(
    request: Request,
    view: StatusView,
    action: Action | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    *,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    forms = [
        form_for(
            allowed,
            values if allowed is action else None,
            errors if allowed is action else None,
            url=f"/inbox/referrals/{view.rfi_id}/actions/{allowed}",
        )
        for allowed in allowed_actions(view.status)
    ]
    context = {"view": view, "forms": forms, "notice": notice, "now": datetime.now(UTC)}
    return _page(request, "inbox_referral.html", context, status=status)


async def _view(services: Services, rfi_id: str, partner_id: str) -> StatusView:
    """The partner's referral of the RFI; another partner's is not found, like none."""
    return await temporal_call(services, lambda c: referrals.status(c, rfi_id, partner_id))


def _sign_in_link(services: Services, token: str) -> SignIn:
    return granted(services, lambda signer: signer.verify_sign_in(token), "sign-in link")


def _send_sign_in(services: Services, email: str) -> None:
    """Email a sign-in link if ``email`` is a contact's; log neither the address nor the link."""
    contact = services.contact_by_email(email)
    if contact is None or services.signer is None:
        log.info("sign-in asked for an address that is no partner contact")
        return
    if not services.sign_in_emails.allow(email):
        log.warning("sign-in email to a contact of partner %s not sent: over 5 an hour", contact[0])
        return
    partner_id, partner_name, contact_name = contact
    token = services.signer.sign_sign_in(partner_id, datetime.now(UTC))
    url = f"{services.settings.public_url}/inbox/sign-in/{token}"
    env = services.templates.env
    context = {"contact_name": contact_name, "partner_name": partner_name, "url": url}
    message = RenderedEmail(
        subject=f"Sign in to the partner inbox of {partner_name}",
        text=env.get_template("sign_in_email.txt").render(context),
        html=env.get_template("sign_in_email.html").render(context),
    )
    try:
        services.mailer.send(f"sign-in.{secrets.token_hex(8)}", email, message)
    except Exception as error:  # the contact asks again; the reason stays in the log
        log.warning("sign-in email to partner %s not sent: %s", partner_id, type(error).__name__)
        return
    log.info("sign-in link sent to a contact of partner %s", partner_id)


def _page(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    context = {"title": "Partner inbox", **context}
    return templates(request).TemplateResponse(request, name, context, status_code=status)


def _short(text: str, width: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rsplit(" ", 1)[0] + "…"


def _left(delta: Any) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 48 else f"{hours} h"
