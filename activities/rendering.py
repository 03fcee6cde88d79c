"""Email bodies (text and HTML) rendered from Jinja2 templates; HTML escapes every value."""

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from workflows.models import EmailKind, EmailRequest, Status

SUBJECTS = {
    EmailKind.LEAD: "New referral: {need} ({region})",
    EmailKind.REMINDER: "Reminder: a referral is waiting for your answer ({region})",
    EmailKind.LAST_CALL: "Last call: decide on your referral by tomorrow ({region})",
    EmailKind.DETAILS: "Customer details for your referral ({region})",
    EmailKind.REROUTE: "Please choose another partner for your request",
}

REROUTE_REASONS = {
    Status.SKIPPED: "{partner} cannot take on your request.",
    Status.MISSED: "{partner} did not answer your request in time.",
    Status.DECLINED: "{partner} decided not to make an offer.",
    Status.EXPIRED: "{partner} did not decide on your request in time.",
}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("activities", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,  # package data: no stat of the template file for every email
        )

    def render(self, email: EmailRequest) -> RenderedEmail:
        rfi = email.rfi
        context = {
            "email": email,
            "rfi": rfi,
            "partner": email.partner,
            "referral_id": email.id.rsplit(".", 1)[0],
            "outcome": REROUTE_REASONS.get(email.status, "").format(
                partner=email.partner.partner_name
            ),
        }
        # A subject is a header, not HTML: collapse whitespace so nothing can inject headers.
        subject = " ".join(
            SUBJECTS[email.kind].format(need=rfi.need[:60], region=rfi.region).split()
        )
        return RenderedEmail(
            subject=subject,
            text=self._env.get_template(f"{email.kind}.txt").render(context),
            html=self._env.get_template(f"{email.kind}.html").render(context),
        )
