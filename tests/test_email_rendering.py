"""What each email shows, rendered from its templates: the overview, the customer's contact
only where the partner may see it, the referral it belongs to, and every value as typed in
text and escaped in HTML. The escaping of every field in every email kind, one at a time, is in
test_email_escaping.py."""

import json

import pytest

from activities.rendering import EmailRenderer
from tests.emails import (
    CUSTOMER,
    CUSTOMER_TRACES,
    DUE_AT_SHOWN,
    OVERVIEW,
    PARTNER,
    customer_rfi,
    make_request,
    render,
)
from workflows.models import EmailKind, EmailRequest, Status


@pytest.mark.parametrize("kind", [EmailKind.LEAD, EmailKind.REMINDER])
def test_lead_and_reminder_show_the_overview_but_never_the_customer(kind: EmailKind) -> None:
    rendered = render(kind)

    for part in (rendered.text, rendered.html):
        assert "Hello Jonas Weber" in part
        assert OVERVIEW["need"] in part
        assert "emea / Berlin" in part
        assert "200-500" in part
        assert DUE_AT_SHOWN in part
        for trace in CUSTOMER_TRACES:
            assert trace not in part
    for trace in CUSTOMER_TRACES:
        assert trace not in rendered.subject
    assert "emea" in rendered.subject


def test_lead_subject_names_the_need_and_region() -> None:
    rendered = render(EmailKind.LEAD)

    assert rendered.subject == f"New referral: {OVERVIEW['need']} (emea)"


def test_overview_without_a_location_shows_the_region_alone() -> None:
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(location=None))

    assert "emea /" not in rendered.text
    assert "emea /" not in rendered.html
    assert "emea" in rendered.text
    assert "emea" in rendered.html


def test_details_carry_the_full_customer_contact() -> None:
    rendered = render(EmailKind.DETAILS)

    for part in (rendered.text, rendered.html):
        assert "Hello Jonas Weber" in part
        assert OVERVIEW["need"] in part
        assert "emea / Berlin" in part
        assert "200-500" in part
        assert CUSTOMER["name"] in part
        assert CUSTOMER["company"] in part
        assert CUSTOMER["email"] in part
        assert CUSTOMER["phone"] in part
        assert DUE_AT_SHOWN in part


def test_details_without_a_phone_have_no_phone_line() -> None:
    rendered = render(EmailKind.DETAILS, rfi=customer_rfi(customer={**CUSTOMER, "phone": None}))

    for part in (rendered.text, rendered.html):
        assert CUSTOMER["email"] in part
        assert "Phone" not in part
        assert "None" not in part


@pytest.mark.parametrize("kind", [k for k in EmailKind if k is not EmailKind.REROUTE])
def test_every_email_to_the_partner_names_its_referral(kind: EmailKind) -> None:
    request = make_request(kind)
    rendered = EmailRenderer().render(request)

    referral_id = request.id.rsplit(".", 1)[0]
    assert referral_id.endswith(":acme-consulting")
    assert f"Referral {referral_id}" in rendered.text
    assert f"Referral {referral_id}" in rendered.html
    assert f"{referral_id}.1" not in rendered.text


@pytest.mark.parametrize("alternatives", [["Globex Partners"], [], None])
def test_the_customers_email_carries_no_internal_id_and_its_subject_says_what_it_says(
    alternatives: list[str] | None,
) -> None:
    rendered = render(EmailKind.REROUTE, status=Status.SKIPPED, alternatives=alternatives)
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "referral:" not in part
        assert "Referral" not in part
    if alternatives == []:
        assert rendered.subject == "Your request: no other partner to suggest right now"
        assert "we have no one else to suggest right now" in rendered.text
    else:
        assert rendered.subject == "Please choose another partner for your request"
        assert "choose" in rendered.text


@pytest.mark.parametrize(
    ("status", "explanation"),
    [
        (Status.SKIPPED, "Acme Consulting cannot take on your request."),
        (Status.MISSED, "Acme Consulting did not answer your request in time."),
        (Status.DECLINED, "Acme Consulting decided not to make an offer."),
        (Status.EXPIRED, "Acme Consulting did not decide on your request in time."),
        (Status.LOST, "Acme Consulting and you did not reach a deal."),
    ],
)
def test_reroute_tells_the_customer_why(status: Status, explanation: str) -> None:
    rendered = render(EmailKind.REROUTE, status=status)

    assert rendered.subject == "Please choose another partner for your request"
    for part in (rendered.text, rendered.html):
        assert f"Hello {CUSTOMER['name']}" in part
        assert explanation in part
        assert OVERVIEW["need"] in part
        assert "choose another partner" in part
        assert "Their note" not in part


def test_reroute_explanations_differ_per_status() -> None:
    statuses = [Status.SKIPPED, Status.MISSED, Status.DECLINED, Status.EXPIRED]
    texts = {render(EmailKind.REROUTE, status=status).text for status in statuses}

    assert len(texts) == len(statuses)


def test_html_escapes_customer_supplied_text() -> None:
    rfi = customer_rfi(
        customer={**CUSTOMER, "name": "<script>alert(1)</script>"}, need="Tom & Jerry <b>"
    )

    for kind in EmailKind:
        rendered = render(kind, rfi=rfi)
        assert "<script" not in rendered.html.lower()
        assert "<b>" not in rendered.html
        assert "Tom &amp; Jerry &lt;b&gt;" in rendered.html
        # Plain text and the subject header are not HTML: they show the text as typed.
        assert "Tom & Jerry <b>" in rendered.text
        assert "&amp;" not in rendered.text
        if kind in (EmailKind.DETAILS, EmailKind.REROUTE):
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
            assert "<script>alert(1)</script>" in rendered.text
    assert render(EmailKind.LEAD, rfi=rfi).subject == "New referral: Tom & Jerry <b> (emea)"


def test_html_escapes_the_partners_name() -> None:
    partner = PARTNER.model_copy(update={"partner_name": "AT&T <Partners>"})
    request = make_request(EmailKind.REROUTE, status=Status.DECLINED).model_copy(
        update={"partner": partner}
    )

    rendered = EmailRenderer().render(request)

    assert "AT&amp;T &lt;Partners&gt; decided not to make an offer." in rendered.html
    assert "AT&T <Partners> decided not to make an offer." in rendered.text


@pytest.mark.parametrize("separator", ["\r\n", "\n", "\r"])
def test_subject_never_contains_a_newline(separator: str) -> None:
    rfi = customer_rfi(need=f"Cloud migration{separator}Bcc: x@y")

    for kind in EmailKind:
        subject = render(kind, rfi=rfi).subject
        assert "\r" not in subject
        assert "\n" not in subject
    assert (
        render(EmailKind.LEAD, rfi=rfi).subject == "New referral: Cloud migration Bcc: x@y (emea)"
    )


@pytest.mark.parametrize("kind", list(EmailKind))
def test_a_request_recorded_with_the_whole_rfi_renders_the_same_email(kind: EmailKind) -> None:
    # Requests scheduled, or handed to the next run, before they carried the overview alone.
    request = make_request(kind)
    recorded = request.model_dump(mode="json") | {"rfi": customer_rfi().model_dump(mode="json")}
    earlier = EmailRequest.model_validate_json(json.dumps(recorded))

    assert EmailRenderer().render(earlier) == EmailRenderer().render(request)
