"""The activity that sends one referral email through the configured mailer.

The mailer raises plain errors (`activities.mailers`); the activity turns the two that
sending again cannot help into the non-retryable ``ApplicationError``s the workflow catches:
``EmailRejected`` into type ``REJECTED``, ``EmailOutcomeUnknown`` into type
``OUTCOME_UNKNOWN``, with the mailer's message. Any other error passes unchanged: nothing was
sent, and Temporal retries it.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mailers import (
    OUTCOME_UNKNOWN,
    REJECTED,
    EmailOutcomeUnknown,
    EmailRejected,
    Mailer,
)
from activities.rendering import EmailRenderer
from workflows.models import EmailReceipt, EmailRequest


class EmailActivities:
    def __init__(self, mailer: Mailer, renderer: EmailRenderer | None = None) -> None:
        self._mailer = mailer
        self._renderer = renderer or EmailRenderer()

    @activity.defn(name="send_email")
    def send_email(self, email: EmailRequest) -> EmailReceipt:
        """Fails for good with REJECTED or OUTCOME_UNKNOWN; any other failure means nothing
        was sent."""
        rendered = self._renderer.render(email)
        # Not chained: the history keeps one failure, with the mailer's message and no more
        # (a chained error would reach it as a cause, with whatever that cause quotes).
        try:
            reference = self._mailer.send(email.id, email.to, rendered)
        except EmailRejected as error:
            raise ApplicationError(str(error), type=REJECTED, non_retryable=True) from None
        except EmailOutcomeUnknown as error:
            raise ApplicationError(str(error), type=OUTCOME_UNKNOWN, non_retryable=True) from None
        activity.logger.info("Email %s (%s) sent via %s", email.id, email.kind, self._mailer.name)
        return EmailReceipt(id=email.id, delivered_by=self._mailer.name, reference=reference)
