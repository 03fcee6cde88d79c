"""Sending an event as Standard Webhooks describes, to a real HTTP receiver on loopback that
verifies every signature with the `standardwebhooks` package, as a receiver would."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from activities.webhook_sender import (
    RETRY_SCHEDULE,
    EndpointGone,
    EventRefused,
    TryAgain,
    WebhookSender,
    next_try_in,
    signed,
)
from archive.events import events_of
from tests.factories import act, started
from tests.receivers import DRIP, DRIP_BODY, HUGE, SILENT, Receiver, hostile, receiving

OLD_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    script, delay = getattr(request, "param", ([], 0.0))
    with receiving(list(script), delay) as server:
        yield server


def an_event() -> tuple[str, str]:
    referral, _ = started()
    act(referral, "interested", None, referral.rfi.received_at + timedelta(hours=1))
    event = events_of(referral.workflow_id, referral.view())[1]
    return event.id, event.body()


def test_the_receiver_verifies_the_signature_id_and_timestamp(receiver: Receiver) -> None:
    event_id, body = an_event()
    now = datetime.now(UTC)
    assert WebhookSender().send(receiver.url, signed([OLD_SECRET], event_id, body, now)) == 200
    [(headers, received)] = [(r.headers, r.body) for r in receiver.received]
    assert received == body
    assert headers["webhook-id"] == event_id
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(OLD_SECRET).verify(received, headers)["type"] == "referral.evaluating"
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW_SECRET).verify(received, headers)
    tampered = json.dumps({**json.loads(received), "type": "referral.won"})
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(tampered, headers)


def test_during_a_rotation_both_secrets_sign(receiver: Receiver) -> None:
    event_id, body = an_event()
    WebhookSender().send(
        receiver.url, signed([NEW_SECRET, OLD_SECRET], event_id, body, datetime.now(UTC))
    )
    [(headers, received)] = [(r.headers, r.body) for r in receiver.received]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (NEW_SECRET, OLD_SECRET):
        assert Webhook(secret).verify(received, headers)["data"]["seq"] == 1


@pytest.mark.parametrize(
    ("receiver", "error", "retry_after"),
    [
        (([(500, {})], 0.0), TryAgain, None),
        (([(503, {"Retry-After": "7"})], 0.0), TryAgain, 7.0),
        (([(429, {"Retry-After": "120"})], 0.0), TryAgain, 120.0),
        (([(408, {})], 0.0), TryAgain, None),
        (([(410, {})], 0.0), EndpointGone, None),
        (([(400, {})], 0.0), EventRefused, None),
        (([(404, {})], 0.0), EventRefused, None),
        (([(307, {"Location": "http://127.0.0.1:9/elsewhere"})], 0.0), EventRefused, None),
    ],
    indirect=["receiver"],
    ids=["500", "503-retry-after", "429-retry-after", "408", "410", "400", "404", "redirect"],
)
def test_each_answer_says_what_comes_next(
    receiver: Receiver, error: type[Exception], retry_after: float | None
) -> None:
    event_id, body = an_event()
    with pytest.raises(error) as raised:
        WebhookSender().send(receiver.url, signed([OLD_SECRET], event_id, body, datetime.now(UTC)))
    if isinstance(raised.value, TryAgain):
        assert raised.value.retry_after == retry_after
    if isinstance(raised.value, EventRefused):
        assert str(raised.value.status) in str(raised.value)
    assert len(receiver.received) == 1


@pytest.mark.parametrize("receiver", [([], 2.0)], indirect=True)
def test_an_endpoint_that_does_not_answer_in_time_is_tried_again(receiver: Receiver) -> None:
    event_id, body = an_event()
    with pytest.raises(TryAgain, match=r"no complete answer within 0\.5 s") as raised:
        WebhookSender(timeout_s=0.5).send(
            receiver.url, signed([OLD_SECRET], event_id, body, datetime.now(UTC))
        )
    assert not raised.value.answered


def test_nobody_listening_is_tried_again() -> None:
    event_id, body = an_event()
    with pytest.raises(TryAgain, match="the endpoint refused the connection"):
        WebhookSender().send(
            "http://127.0.0.1:9/hooks", signed([OLD_SECRET], event_id, body, datetime.now(UTC))
        )


@pytest.mark.parametrize("kind", [DRIP, SILENT])
def test_an_answer_that_never_completes_ends_at_the_deadline(kind: str) -> None:
    """A status line dripped a byte every 0.2 s never outlasts the deadline, though no
    single read waits longer than that; nor does a receiver that never answers."""
    sender = WebhookSender(timeout_s=1.0)
    with hostile(kind) as receiver:
        for _ in range(2):
            began = time.monotonic()
            with pytest.raises(TryAgain, match="no complete answer within 1 s") as raised:
                sender.send(receiver.url, signed([OLD_SECRET], *an_event(), datetime.now(UTC)))
            assert 1.0 <= time.monotonic() - began < 1.5
            assert not raised.value.answered
        assert receiver.requests == 2  # the second try on a connection of its own
        assert receiver.connections == 2


def test_a_huge_answer_is_read_no_further_than_its_first_bytes() -> None:
    """200 with 2 GiB behind it: the status stands, at most 64 KiB are read, and the
    connection is dropped instead of being read to its end."""
    sender = WebhookSender(timeout_s=5.0)
    with hostile(HUGE) as receiver:
        began = time.monotonic()
        assert sender.send(receiver.url, signed([OLD_SECRET], *an_event(), datetime.now(UTC)))
        assert sender.send(receiver.url, signed([OLD_SECRET], *an_event(), datetime.now(UTC)))
        took = time.monotonic() - began
        assert (receiver.requests, receiver.connections) == (2, 2)
    assert took < 2.0
    assert receiver.written < 64 * 1024**2  # what the kernels buffered, far from 2 GiB


def test_a_body_dripped_after_the_status_is_not_waited_for_past_the_deadline() -> None:
    sender = WebhookSender(timeout_s=1.0)
    with hostile(DRIP_BODY) as receiver:
        began = time.monotonic()
        assert sender.send(receiver.url, signed([OLD_SECRET], *an_event(), datetime.now(UTC)))
        assert 1.0 <= time.monotonic() - began < 1.5
        assert sender.send(receiver.url, signed([OLD_SECRET], *an_event(), datetime.now(UTC)))
        assert receiver.connections == 2  # the first one could not serve another event


def test_the_retry_schedule_is_the_standard_one_then_gives_up() -> None:
    assert [next_try_in(n) for n in range(1, 9)] == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
        None,
    ]
    assert len(RETRY_SCHEDULE) == 7
    assert next_try_in(2, retry_after=42.0) == timedelta(seconds=42)
    assert next_try_in(8, retry_after=42.0) is None  # dead-lettered all the same


def test_an_endpoint_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signed([], "referral:r:p.1", "{}", datetime.now(UTC))


def test_one_connection_serves_event_after_event(receiver: Receiver) -> None:
    sender = WebhookSender()
    for _ in range(3):
        event_id, body = an_event()
        assert sender.send(receiver.url, signed([OLD_SECRET], event_id, body, datetime.now(UTC)))
    assert len({request.port for request in receiver.received}) == 1
    sender.close()
