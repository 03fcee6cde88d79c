"""The activity that sends one referral email through the configured mailer."""

from temporalio import activity

from activities.mailers import Mailer
from activities.rendering import EmailRenderer
from workflows.models import EmailReceipt, EmailRequest


class EmailActivities:
    def __init__(self, mailer: Mailer, renderer: EmailRenderer | None = None) -> None:
        self._mailer = mailer
        self._renderer = renderer or EmailRenderer()

    @activity.defn(name="send_email")
    def send_email(self, email: EmailRequest) -> EmailReceipt:
        """Fails with the mailer's errors unchanged: REJECTED and OUTCOME_UNKNOWN
        (`activities.mailers`) are final, anything else means nothing was sent."""
        reference = self._mailer.send(email.id, email.to, self._renderer.render(email))
        activity.logger.info("Email %s (%s) sent via %s", email.id, email.kind, self._mailer.name)
        return EmailReceipt(id=email.id, delivered_by=self._mailer.name, reference=reference)
