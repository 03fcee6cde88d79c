"""The outbox mailer: one multipart `.eml` file per email, named after its id, written whole.

What the file holds is compared with the rendered email; the headers are those SendGrid gets
too (test_email_outcomes.py compares the two)."""

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from activities.mailers import OutboxMailer
from activities.rendering import RenderedEmail
from tests.emails import CUSTOMER, SENDER, body, customer_rfi, parse_eml, render
from workflows.models import EmailKind


def test_outbox_writes_one_multipart_eml_named_after_the_email_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # not there yet: the first email creates it
    rendered = render(EmailKind.DETAILS)

    reference = OutboxMailer(outbox, SENDER).send("ref-1.2-details", "p@partner.example", rendered)

    path = outbox / "ref-1.2-details.eml"
    assert reference == str(path)
    assert list(outbox.iterdir()) == [path]
    message = parse_eml(path)
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == SENDER
    assert message["To"] == "p@partner.example"
    assert message["Subject"] == rendered.subject
    # The same on every attempt, and as SendGridMailer sends it: receivers can drop copies.
    assert message["Message-ID"] == "<ref-1%2E2-details@example.com>"
    assert message["X-Referral-Email-Id"] == "ref-1.2-details"
    assert body(message, "plain").rstrip("\n") == rendered.text.rstrip("\n")
    assert body(message, "html").rstrip("\n") == rendered.html.rstrip("\n")
    assert message.defects == []


def test_outbox_keeps_non_ascii_text_intact(tmp_path: Path) -> None:
    rfi = customer_rfi(
        customer={**CUSTOMER, "name": "Zoë Ärgerlich"},
        need="Cloud-Migration für 50 000 €, Größe egal",
    )
    rendered = render(EmailKind.DETAILS, rfi=rfi)

    OutboxMailer(tmp_path, SENDER).send("ref-2.2-details", "p@partner.example", rendered)

    message = parse_eml(tmp_path / "ref-2.2-details.eml")
    assert message["Subject"] == rendered.subject
    for subtype in ("plain", "html"):
        content = body(message, subtype)
        assert "Zoë Ärgerlich" in content
        assert "Cloud-Migration für 50 000 €, Größe egal" in content


def test_outbox_long_non_ascii_subject_and_sender_survive_folding(tmp_path: Path) -> None:
    need = "Cloud-Migration für 50 000 €, Größe egal, Übergabe bis März, bitte mit Schulung"
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(need=need))
    sender = "Empfehlungsbörse <referrals@marketplace.example>"

    OutboxMailer(tmp_path, sender).send("ref-6.1-lead", "p@partner.example", rendered)

    raw = (tmp_path / "ref-6.1-lead.eml").read_bytes()
    assert max(len(line) for line in raw.splitlines()) <= 78  # folded, as SMTP wants
    message = parse_eml(tmp_path / "ref-6.1-lead.eml")
    assert message["Subject"] == rendered.subject
    assert message["From"] == sender
    assert message.defects == []
    # Bodies stay readable in the file: quoted-printable, not base64.
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"base64" not in raw


def test_outbox_keeps_an_ascii_sender_as_configured(tmp_path: Path) -> None:
    sender = '"Acme, Inc. Referrals" <referrals@acme.example>'
    OutboxMailer(tmp_path, sender).send("ref-7.1-lead", "p@partner.example", render(EmailKind.LEAD))

    raw = (tmp_path / "ref-7.1-lead.eml").read_bytes()
    assert f"From: {sender}\n".encode() in raw
    assert parse_eml(tmp_path / "ref-7.1-lead.eml")["From"].addresses[0].display_name == (
        "Acme, Inc. Referrals"
    )


def test_outbox_files_are_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        OutboxMailer(tmp_path, SENDER).send("ref-8.1-lead", "p@x.example", render(EmailKind.LEAD))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ref-8.1-lead.eml").stat().st_mode) == 0o644


def test_a_failed_outbox_write_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        OutboxMailer(tmp_path, SENDER).send("ref-9.1-lead", "p@x.example", render(EmailKind.LEAD))
    assert list(tmp_path.iterdir()) == []  # no message, no hidden temporary file


def test_outbox_lead_subject_cannot_inject_headers(tmp_path: Path) -> None:
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(need="Cloud migration\r\nBcc: x@y"))

    OutboxMailer(tmp_path, SENDER).send("ref-3.1-lead", "p@partner.example", rendered)

    message = parse_eml(tmp_path / "ref-3.1-lead.eml")
    assert message["Bcc"] is None
    assert message["To"] == "p@partner.example"
    assert message["Subject"] == "New referral: Cloud migration Bcc: x@y (emea)"


def test_outbox_retry_leaves_one_file_with_the_latest_content(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, SENDER)
    first = RenderedEmail(subject="First attempt", text="first text\n", html="<p>first</p>\n")
    second = RenderedEmail(subject="Second attempt", text="second text\n", html="<p>second</p>\n")

    mailer.send("ref-4.1-lead", "p@partner.example", first)
    reference = mailer.send("ref-4.1-lead", "p@partner.example", second)

    path = tmp_path / "ref-4.1-lead.eml"
    assert reference == str(path)
    assert list(tmp_path.iterdir()) == [path]  # no second copy, no temporary file
    message = parse_eml(path)
    assert message["Subject"] == "Second attempt"
    assert body(message, "plain") == "second text\n"
    assert body(message, "html") == "<p>second</p>\n"


def test_outbox_keeps_each_email_in_its_own_file(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, SENDER)

    mailer.send("ref-5.1-lead", "p@partner.example", render(EmailKind.LEAD))
    mailer.send("ref-5.2-reminder", "p@partner.example", render(EmailKind.REMINDER))

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ref-5.1-lead.eml",
        "ref-5.2-reminder.eml",
    ]
    assert parse_eml(tmp_path / "ref-5.2-reminder.eml")["Subject"].startswith("Reminder:")
