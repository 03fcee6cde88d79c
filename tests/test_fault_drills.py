"""Fault drills: a misbehaving email provider, malformed and hostile input (fuzzed)."""

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from temporalio.testing import WorkflowEnvironment
from werkzeug import Request, Response

from starter.settings import Settings
from tests.factories import ACME_BERLIN, RECEIVED_AT, act, make_rfi, received_now
from tests.servers import SENDGRID_SEND_PATH, running_worker, start_referral, with_sendgrid
from workflows.lifecycle import ActionRejected, Referral
from workflows.models import Action, Rfi, Status

# What the provider answers for each lead, attempt after attempt (202 once it accepts).
SCRIPTS = {"acme-consulting": [429, 202], "globex": [500, 202], "initech": [400]}


class FlakyProvider:
    """A local endpoint that answers like SendGrid v3, badly at first."""

    def __init__(self) -> None:
        self.calls: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        email_id = body["custom_args"]["referral_email_id"]
        with self._lock:
            partner = next((p for p in SCRIPTS if f":{p}.1-lead" in email_id), None)
            script = SCRIPTS[partner] if partner else [202]
            status = script[min(len(self.calls[email_id]), len(script) - 1)]
            self.calls[email_id].append(status)
        if status == 202:
            return Response(status=202, headers={"X-Message-Id": f"msg-{email_id}"})
        errors = {"errors": [{"message": f"provider answered {status}", "field": None}]}
        return Response(json.dumps(errors), status=status, content_type="application/json")


async def test_a_misbehaving_provider_is_retried_or_recorded_and_never_blocks(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    httpserver: HTTPServer,
) -> None:
    env = time_skipping_env
    provider = FlakyProvider()
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_handler(provider)
    rfi = await received_now(env)
    async with running_worker(env.client, with_sendgrid(settings, httpserver), executor) as worker:
        handles = {
            partner: await start_referral(env.client, worker.task_queue, rfi, partner)
            for partner in SCRIPTS
        }
        for handle in handles.values():
            await handle.signal("no_thanks")
        finals = {p: await h.result() for p, h in handles.items()}

    for partner, final in finals.items():
        assert final.status is Status.SKIPPED  # the lifecycle never waited on the provider
        lead = final.emails[0]
        assert provider.calls[lead.id] == SCRIPTS[partner]
        if partner == "initech":
            assert lead.outcome == "failed"
            assert "provider answered 400" in (lead.error or "")
        else:
            assert lead.outcome == "sent"
    accepted = [status for calls in provider.calls.values() for status in calls if status == 202]
    intended = sum(len(f.emails) for f in finals.values()) - 1  # initech's lead never went
    assert len(accepted) == intended  # at most one accepted message per intended email


# --- Fuzzing the wire models ------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
GOOD = json.loads(make_rfi().model_dump_json())


@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=len(GOOD)))
@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_rfi_json_is_accepted_or_refused_with_a_validation_error(
    changes: dict[str, Any],
) -> None:
    data = {**GOOD, **changes}
    try:
        rfi = Rfi.model_validate(data)
    except ValidationError:
        return
    assert rfi.received_at.utcoffset() == timedelta(0)
    assert rfi.deadlines.respond_within > timedelta(0)


NOW = RECEIVED_AT + timedelta(hours=1)


@pytest.mark.parametrize("state", ["New", "Evaluating", "Negotiating"])
@given(action=st.sampled_from([*Action, "escalate", ""]), argument=JSON)
@hypothesis_settings(max_examples=150, deadline=None)
def test_any_action_payload_is_taken_or_refused_and_never_corrupts(
    state: str, action: str, argument: Any
) -> None:
    referral = Referral(make_rfi(), "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    if state != "New":
        act(referral, "interested", None, NOW)
    if state == "Negotiating":
        act(
            referral,
            "accept",
            {"estimated_deal_value": 5, "currency": "EUR", "estimated_close_date": "2027-01-01"},
            NOW,
        )
    before = referral.view()
    refusal: ActionRejected | None = None
    try:
        act(referral, str(action), argument, NOW + timedelta(hours=1))
    except ActionRejected as rejected:
        refusal = rejected
    after = referral.view()
    if refusal is not None:
        assert refusal.status == before.status
        assert after == before  # a refusal changes nothing
    else:
        assert len(after.transitions) == len(before.transitions) + 1
        assert after.transitions[-1].from_ == before.status
