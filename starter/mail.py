"""Where the project's email goes, from the settings: SendGrid's v3 API when a key is set,
else `.eml` files in the outbox. The worker sends referral emails with it, the partner web
service its sign-in links."""

from activities.mailers import Mailer, OutboxMailer, SendGridMailer
from starter.settings import Settings


def build_mailer(settings: Settings) -> Mailer:
    if settings.sendgrid_api_key:
        return SendGridMailer(
            settings.sendgrid_api_key.get_secret_value(),
            settings.sendgrid_from,
            host=settings.sendgrid_api_host,
        )
    return OutboxMailer(settings.outbox_dir, settings.sendgrid_from)
