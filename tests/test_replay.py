"""The determinism guard: recorded histories of every path replay with today's workflow.

A change that would break running referrals fails here. Change the workflow safely with
`workflow.patched()` (see the README); record new histories with
`python -m tests.histories.record`.
"""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import SANDBOX
from workflows.models import legacy_referral_workflow_id, referral_workflow_id
from workflows.referral import ReferralWorkflow

# Every path of the lifecycle, recorded while workflow ids were `referral-{rfi_id}-{partner_id}`
# (they replay under it), and a run whose text field held a number, as they could then.
PATHS = {
    "won",
    "lost",
    "skipped",
    "missed_after_reminder",
    "declined",
    "expired",
    "refused_signals",
    "updates",
}
EARLIER_IDS = PATHS | {"numeric_company_size"}


def workflow_id_of(path: Path, history: dict[str, Any]) -> str:
    """The referral's workflow id, from the input in the history's first event."""
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    referral = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    scheme = legacy_referral_workflow_id if path.stem in EARLIER_IDS else referral_workflow_id
    return scheme(referral["rfi"]["id"], referral["partner_id"])


HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_path_has_a_recorded_history() -> None:
    assert {h.stem for h in HISTORIES} >= EARLIER_IDS


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    data = json.loads(path.read_text())  # noqa: ASYNC240
    history = WorkflowHistory.from_json(workflow_id_of(path, data), data)
    replayer = Replayer(
        workflows=[ReferralWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX,
    )
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
