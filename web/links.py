"""Signed links: what an email's one-click link grants, signed and checked with PyJWT.

`REFERRALS_LINK_KEYS` is written like the codec keys, `KEYID:BASE64KEY,...` (32-byte keys):
the first key signs, every listed key verifies, so a key is rotated by putting the new one
first and keeping the old one until the links it signed have expired. A token names its key
in the JWT header (`kid`) and its purpose in the audience, so that a link of one kind is
never taken for another. A token is a bearer credential: it is never logged.
"""

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from starter.codec import CodecKeyError, parse_keys
from workflows.lifecycle import allowed_actions
from workflows.models import Action, EmailKind, EmailRequest, parse_referral_workflow_id

ALGORITHM = "HS256"
ACTION_AUDIENCE = "referrals:action"
SIGN_IN_AUDIENCE = "referrals:sign-in"
SESSION_AUDIENCE = "referrals:session"
SIGN_IN_LIFETIME = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
# A link stays usable this long after the deadline of the state it was sent in, so that a
# partner who clicks late is told what happened instead of being refused.
VALID_AFTER_DEADLINE = timedelta(days=7)


class LinkKeyError(ValueError):
    """REFERRALS_LINK_KEYS cannot be used."""


class InvalidLink(Exception):
    """A token that is tampered with, expired, signed with an unknown key or not a link of
    the kind asked for; ``reason`` says which in a few words, never what the token held."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ActionLink:
    """One partner's one action on one referral, until ``expires_at``."""

    rfi_id: str
    partner_id: str
    action: Action
    expires_at: datetime


@dataclass(frozen=True)
class SignIn:
    """A partner contact's one sign-in to its inbox: ``token_id`` makes it single use."""

    partner_id: str
    token_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Session:
    """A signed-in inbox: one partner's, until ``expires_at``."""

    partner_id: str
    expires_at: datetime


class LinkSigner:
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise LinkKeyError("no link key given")
        self._current = keys[0]
        self._keys = dict(keys)

    @classmethod
    def from_setting(cls, spec: str | None) -> "LinkSigner | None":
        """The signer for REFERRALS_LINK_KEYS; None when unset or empty."""
        try:
            keys = parse_keys(spec or "", setting="REFERRALS_LINK_KEYS")
        except CodecKeyError as error:
            message = str(error)
            if not message.startswith("REFERRALS_LINK_KEYS"):
                message = f"REFERRALS_LINK_KEYS: {message}"
            raise LinkKeyError(message) from None
        return cls(keys) if keys else None

    def sign_action(self, link: ActionLink) -> str:
        claims = {"rfi": link.rfi_id, "pid": link.partner_id, "act": str(link.action)}
        return self._sign(claims, ACTION_AUDIENCE, link.expires_at)

    def verify_action(self, token: str) -> ActionLink:
        claims = self._verify(token, ACTION_AUDIENCE, ("rfi", "pid", "act"))
        try:
            action = Action(str(claims["act"]))
        except ValueError:
            raise InvalidLink("names no action") from None
        return ActionLink(
            rfi_id=str(claims["rfi"]),
            partner_id=str(claims["pid"]),
            action=action,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )

    def sign_sign_in(self, partner_id: str, now: datetime) -> str:
        claims = {"pid": partner_id, "jti": secrets.token_hex(16)}
        return self._sign(claims, SIGN_IN_AUDIENCE, now + SIGN_IN_LIFETIME)

    def verify_sign_in(self, token: str) -> SignIn:
        claims = self._verify(token, SIGN_IN_AUDIENCE, ("pid", "jti"))
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return SignIn(str(claims["pid"]), str(claims["jti"]), expires_at)

    def sign_session(self, partner_id: str, now: datetime) -> str:
        return self._sign({"pid": partner_id}, SESSION_AUDIENCE, now + SESSION_LIFETIME)

    def verify_session(self, token: str) -> Session:
        claims = self._verify(token, SESSION_AUDIENCE, ("pid",))
        return Session(str(claims["pid"]), datetime.fromtimestamp(int(claims["exp"]), UTC))

    def _sign(self, claims: Mapping[str, object], audience: str, expires_at: datetime) -> str:
        key_id, key = self._current
        body = {**claims, "aud": audience, "exp": int(expires_at.timestamp())}
        return jwt.encode(body, key, algorithm=ALGORITHM, headers={"kid": key_id})

    def _verify(self, token: str, audience: str, required: Sequence[str]) -> Mapping[str, Any]:
        try:
            key_id = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(key_id) if isinstance(key_id, str) else None
            if key is None:
                raise InvalidLink("signed with an unknown key")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                options={"require": ["exp", "aud", *required]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidLink("expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidLink("not a link of this kind") from None
        except jwt.InvalidTokenError:
            raise InvalidLink("malformed or tampered with") from None
        if not all(isinstance(claims[name], str) for name in required):
            raise InvalidLink("malformed or tampered with")
        return claims


# The emails that ask the partner to act, and so carry one link per action allowed.
PARTNER_ASKED = frozenset(
    {EmailKind.LEAD, EmailKind.REMINDER, EmailKind.DETAILS, EmailKind.LAST_CALL}
)


class EmailLinks:
    """The one-click links an email carries: one per action its state allows."""

    def __init__(self, signer: LinkSigner, public_url: str) -> None:
        self._signer = signer
        self._base = public_url.rstrip("/")

    def for_email(self, email: EmailRequest) -> dict[str, str]:
        """Action name to URL; none for the customer's emails or a referral under an id
        scheme older than the links."""
        pair = parse_referral_workflow_id(email.id.rsplit(".", 1)[0])
        if email.kind not in PARTNER_ASKED or email.due_at is None or pair is None:
            return {}
        rfi_id, partner_id = pair
        expires_at = email.due_at + VALID_AFTER_DEADLINE
        return {
            str(action): action_url(
                self._base,
                self._signer.sign_action(ActionLink(rfi_id, partner_id, action, expires_at)),
            )
            for action in allowed_actions(email.status)
        }


def action_url(base: str, token: str) -> str:
    return f"{base}/a/{token}"
