"""Email bodies (text and HTML) rendered from Jinja2 templates; HTML escapes every value."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from workflows.lifecycle import allowed_actions
from workflows.models import EmailKind, EmailRequest, Status, parse_referral_workflow_id

SUBJECTS = {
    EmailKind.LEAD: "New referral: {need} ({region})",
    EmailKind.REMINDER: "Reminder: a referral is waiting for your answer ({region})",
    EmailKind.LAST_CALL: "Last call: decide on your referral by tomorrow ({region})",
    EmailKind.DETAILS: "Customer details for your referral ({region})",
    EmailKind.REROUTE: "Please choose another partner for your request",
}
# The reroute's subject when every partner serving the region already has the request.
NO_ONE_ELSE = "Your request: no other partner to suggest right now"

REROUTE_REASONS = {
    Status.SKIPPED: "{partner} cannot take on your request.",
    Status.MISSED: "{partner} did not answer your request in time.",
    Status.DECLINED: "{partner} decided not to make an offer.",
    Status.EXPIRED: "{partner} did not decide on your request in time.",
    Status.LOST: "{partner} and you did not reach a deal.",
}


# What each action an email asks for is called, and what it does, in the partner's words.
CHOICES = {
    "interested": ("I'm interested", "see the customer's details"),
    "no_thanks": ("No thanks", "the customer will choose another partner"),
    "accept": ("Accept", "with an estimated deal value and closing date"),
    "decline": ("Decline", "the customer will choose another partner"),
}
ASKING = frozenset({EmailKind.LEAD, EmailKind.REMINDER, EmailKind.DETAILS, EmailKind.LAST_CALL})


class ActionLinks(Protocol):
    def for_email(self, email: EmailRequest) -> Mapping[str, str]:
        """Action name to the URL that answers it, for the email's recipient alone."""


@dataclass(frozen=True)
class Choice:
    action: str
    label: str
    effect: str
    url: str | None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    def __init__(self, links: ActionLinks | None = None) -> None:
        self._links = links
        self._env = Environment(
            loader=PackageLoader("activities", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,  # package data: no stat of the template file for every email
        )

    def render(self, email: EmailRequest) -> RenderedEmail:
        rfi = email.rfi
        referral_id = email.id.rsplit(".", 1)[0]
        links = self._links.for_email(email) if self._links and email.kind in ASKING else {}
        pair = parse_referral_workflow_id(referral_id)
        context = {
            "email": email,
            "rfi": rfi,
            "partner": email.partner,
            "referral_id": referral_id,
            "rfi_id": pair[0] if pair else referral_id,
            "links": links,
            "choices": [
                Choice(str(action), *CHOICES[action], links.get(action))
                for action in (allowed_actions(email.status) if email.kind in ASKING else [])
            ],
            "outcome": REROUTE_REASONS.get(email.status, "").format(
                partner=email.partner.partner_name
            ),
        }
        # A subject is a header, not HTML: collapse whitespace so nothing can inject headers.
        subject = " ".join(_subject(email).format(need=rfi.need[:60], region=rfi.region).split())
        return RenderedEmail(
            subject=subject,
            text=self._env.get_template(f"{email.kind}.txt").render(context),
            html=self._env.get_template(f"{email.kind}.html").render(context),
        )


def _subject(email: EmailRequest) -> str:
    """The subject says what the body says: a reroute without anyone to suggest does not
    ask the customer to choose one."""
    if email.kind is EmailKind.REROUTE and email.alternatives == []:
        return NO_ONE_ELSE
    return SUBJECTS[email.kind]
