"""The pages a partner reaches from an email's one-click link.

`GET /a/{token}` only reads: it shows what the partner may see now and a form for the
link's one action (mail scanners and link previews fetch every link). `POST` takes the
action through the same update the `referrals` command sends, once: again it says the action
was already taken, and an action the referral no longer allows is refused with its status.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from starter import referrals
from web.common import (
    ServicesDep,
    check_origin,
    form_for,
    granted,
    submit,
    taken,
    templates,
    temporal_call,
)
from web.forms import TITLES
from web.links import ActionLink
from workflows.lifecycle import allowed_actions
from workflows.models import StatusView

router = APIRouter(include_in_schema=False)


async def action_link(token: str, services: ServicesDep) -> ActionLink:
    """The link's grant, or 403."""
    return granted(services, lambda signer: signer.verify_action(token), "action link")


LinkDep = Annotated[ActionLink, Depends(action_link)]


@router.get("/a/{token}", response_class=HTMLResponse)
async def show_action(request: Request, link: LinkDep, services: ServicesDep) -> HTMLResponse:
    view = await _view(services, link)
    if taken(view, link.action):
        return _page(request, "done.html", view, link, again=True)
    if link.action not in allowed_actions(view.status):
        return _page(request, "refused.html", view, link, status=409)
    return _page(request, "action.html", view, link)


@router.post("/a/{token}", response_class=HTMLResponse)
async def take_action(request: Request, link: LinkDep, services: ServicesDep) -> HTMLResponse:
    check_origin(request, services)
    outcome = await submit(
        request, services, link.rfi_id, link.partner_id, link.action, door="email_link"
    )
    view = outcome.view
    match outcome.kind:
        case "done":
            return _page(request, "done.html", view, link)
        case "again":
            return _page(request, "done.html", view, link, again=True)
        case "invalid":
            values, errors = outcome.values, outcome.errors
            return _page(
                request, "action.html", view, link, status=422, values=values, errors=errors
            )
        case _:  # "refused"
            return _page(request, "refused.html", view, link, status=409)


async def _view(services: ServicesDep, link: ActionLink) -> StatusView:
    return await temporal_call(
        services, lambda c: referrals.status(c, link.rfi_id, link.partner_id)
    )


def _page(
    request: Request,
    name: str,
    view: StatusView,
    link: ActionLink,
    *,
    status: int = 200,
    again: bool = False,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    context = {
        "view": view,
        "title": TITLES[link.action],
        "form": form_for(link.action, values, errors),
        "again": again,
        "now": datetime.now(UTC),
    }
    return templates(request).TemplateResponse(request, name, context, status_code=status)
