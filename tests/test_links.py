"""Signed one-click links: what a token grants, how keys rotate, what is refused, and the
links each email carries in both its parts."""

import base64
import json
import re
from datetime import timedelta

import jwt
import pytest

from activities.rendering import EmailRenderer
from tests.emails import body, make_request, parse_eml
from tests.factories import now_utc
from web.links import (
    ActionLink,
    EmailLinks,
    InvalidLink,
    LinkKeyError,
    LinkSigner,
)
from workflows.models import Action, EmailKind

OLD_KEY = ("k1", b"1" * 32)
NEW_KEY = ("k2", b"2" * 32)
BASE = "https://partners.example.com"


def link(
    action: Action = Action.INTERESTED, *, expires_in: timedelta = timedelta(days=1)
) -> ActionLink:
    return ActionLink("rfi-1001", "acme-consulting", action, now_utc() + expires_in)


def forged(token: str, **claims: object) -> str:
    """``token`` with its claims changed and its signature kept."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    changed = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


def test_a_link_grants_its_one_action_on_its_one_referral() -> None:
    signer = LinkSigner([NEW_KEY])
    granted = signer.verify_action(signer.sign_action(link(Action.ACCEPT)))
    assert (granted.rfi_id, granted.partner_id, granted.action) == (
        "rfi-1001",
        "acme-consulting",
        Action.ACCEPT,
    )


def test_the_first_key_signs_and_every_listed_key_verifies() -> None:
    old_token = LinkSigner([OLD_KEY]).sign_action(link())
    rotated = LinkSigner([NEW_KEY, OLD_KEY])
    assert rotated.verify_action(old_token).action is Action.INTERESTED
    assert jwt.get_unverified_header(rotated.sign_action(link()))["kid"] == "k2"
    with pytest.raises(InvalidLink, match="unknown key"):
        LinkSigner([NEW_KEY]).verify_action(old_token)


@pytest.mark.parametrize(
    "claims",
    [{"pid": "globex"}, {"act": "won"}, {"rfi": "rfi-1002"}, {"exp": 4102444800}],
)
def test_a_changed_claim_breaks_the_signature(claims: dict[str, object]) -> None:
    signer = LinkSigner([NEW_KEY])
    with pytest.raises(InvalidLink, match="tampered"):
        signer.verify_action(forged(signer.sign_action(link()), **claims))


def test_expired_foreign_and_unsigned_tokens_are_refused() -> None:
    signer = LinkSigner([NEW_KEY])
    with pytest.raises(InvalidLink, match="expired"):
        signer.verify_action(signer.sign_action(link(expires_in=-timedelta(seconds=5))))
    other_kind = jwt.encode(
        {"aud": "referrals:session", "rfi": "r", "pid": "p", "act": "won", "exp": 4102444800},
        NEW_KEY[1],
        headers={"kid": "k2"},
    )
    with pytest.raises(InvalidLink, match="not a link of this kind"):
        signer.verify_action(other_kind)
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k2"}').rstrip(b"=").decode()
    claims = forged(signer.sign_action(link()), act="won").split(".")[1]
    unsigned = f"{none_header}.{claims}."
    for token in (unsigned, "not-a-token", "", "a.b.c"):
        with pytest.raises(InvalidLink):
            signer.verify_action(token)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("k1", "KEYID:BASE64KEY"),
        ("k1:not base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "has 5 bytes"),
    ],
)
def test_unusable_link_keys_are_named(spec: str, message: str) -> None:
    with pytest.raises(LinkKeyError, match=message) as error:
        LinkSigner.from_setting(spec)
    assert str(error.value).startswith("REFERRALS_LINK_KEYS")
    assert LinkSigner.from_setting(None) is None
    assert LinkSigner.from_setting(" ") is None


ASKED = [
    (EmailKind.LEAD, ["interested", "no_thanks"]),
    (EmailKind.REMINDER, ["interested", "no_thanks"]),
    (EmailKind.DETAILS, ["accept", "decline"]),
    (EmailKind.LAST_CALL, ["accept", "decline"]),
]


@pytest.mark.parametrize(("kind", "actions"), ASKED)
def test_each_partner_email_links_the_actions_its_state_allows(
    kind: EmailKind, actions: list[str]
) -> None:
    signer = LinkSigner([NEW_KEY])
    due_at = now_utc().replace(microsecond=0) + timedelta(hours=72)
    request = make_request(kind).model_copy(update={"due_at": due_at})
    rendered = EmailRenderer(EmailLinks(signer, BASE)).render(request)

    anchors = re.findall(r'<a href="([^"]+)" data-action="([^"]+)"', rendered.html)
    assert [action for _, action in anchors] == actions
    lines = rendered.text.splitlines()
    for url, action in anchors:
        assert url.startswith(f"{BASE}/a/")
        granted = signer.verify_action(url.removeprefix(f"{BASE}/a/"))
        assert (granted.action, granted.partner_id) == (action, "acme-consulting")
        assert granted.rfi_id == request.id.split(":")[1]
        # Valid for a week after the deadline of the state the email was sent in.
        assert granted.expires_at == due_at + timedelta(days=7)
        # The text part: the URL alone on its line, right after the action's words.
        at = lines.index(url)
        assert lines[at - 1].split(":")[0] in {"I'm interested", "No thanks", "Accept", "Decline"}
    assert "no answer links" not in rendered.text


def test_the_customer_and_older_referrals_get_no_links() -> None:
    renderer = EmailRenderer(EmailLinks(LinkSigner([NEW_KEY]), BASE))
    reroute = renderer.render(make_request(EmailKind.REROUTE))
    assert BASE not in reroute.text + reroute.html
    legacy = renderer.render(make_request(EmailKind.LEAD, email_id="referral-r1-acme.1-lead"))
    assert BASE not in legacy.text + legacy.html
    assert "no answer links" in legacy.text


def test_without_link_keys_an_email_says_where_to_answer() -> None:
    request = make_request(EmailKind.LEAD)
    rendered = EmailRenderer().render(request)
    assert "http" not in rendered.text
    rfi_id = request.id.split(":")[1]
    for part in (rendered.text, rendered.html):
        assert "no answer links" in part
        assert rfi_id in " ".join(part.split())
        assert "I'm interested" in part.replace("&#39;", "'")


def test_the_outbox_keeps_the_links_whole(tmp_path: object) -> None:
    from pathlib import Path

    from activities.mailers import OutboxMailer

    folder = Path(str(tmp_path))
    request = make_request(EmailKind.LEAD)
    rendered = EmailRenderer(EmailLinks(LinkSigner([NEW_KEY]), BASE)).render(request)
    OutboxMailer(folder, "Referrals <r@example.com>").send(request.id, request.to, rendered)
    message = parse_eml(folder / f"{request.id}.eml")
    urls = re.findall(r'href="([^"]+)"', body(message, "html"))
    assert len(urls) == 2
    assert all(url in body(message, "plain").splitlines() for url in urls)
