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
from temporalio.worker import WorkflowReplayResult
from temporalio.workflow import NondeterminismError

from tests.servers import replayer
from workflows.emailing import CUSTOMER_OUTLOOK_PATCH
from workflows.metadata import COALESCING_LABEL
from workflows.models import legacy_referral_workflow_id, referral_workflow_id
from workflows.referral import COALESCING_PATCH, REROUTE_ON_LOST_PATCH

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


HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("*.json"))


# Recorded with the last call and reason codes: the guard for runs started since.
SINCE_LAST_CALLS = {"expired_after_last_call", "declined_as_spam"}
# A burst of updates (`python -m tests.histories.record updates_coalesced`): written as
# runs since archive writes wait for a burst's next transition write it, and as runs
# before wrote it (recorded with COALESCE_WITHIN at zero: the same commands as then).
BURSTS = {"updates_coalesced", "updates_burst"}
SINCE_COALESCING = {"updates_coalesced", "expired_since_coalescing"}


SINCE_OUTLOOK = {"skipped_since_outlook", "lost_since_outlook"}


def test_every_path_has_a_recorded_history() -> None:
    assert {h.stem for h in HISTORIES} >= (
        EARLIER_IDS | SINCE_LAST_CALLS | BURSTS | SINCE_COALESCING | SINCE_OUTLOOK
    )


@pytest.mark.parametrize("name", sorted(SINCE_OUTLOOK))
def test_a_reroute_since_the_outlook_records_its_patches(name: str) -> None:
    """A reroute reads how the RFI's other referrals stand (`customer-outlook`); a loss
    asks for one (`reroute-on-lost`): runs recorded before replay without either."""
    _, patches = timers_and_patches(HISTORIES_DIR / f"{name}.json")
    ids = {json.loads(p)["id"] for p in patches}
    assert CUSTOMER_OUTLOOK_PATCH in ids
    assert (REROUTE_ON_LOST_PATCH in ids) is (name == "lost_since_outlook")


def timers_and_patches(path: Path) -> tuple[list[str], list[str]]:
    events = recorded(path)["events"]
    timers = [
        e["timerStartedEventAttributes"]["startToFireTimeout"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_TIMER_STARTED"
    ]
    patches = [
        base64.b64decode(payload["data"]).decode()
        for e in events
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
        and e["markerRecordedEventAttributes"]["markerName"] == "core_patch"
        for detail in e["markerRecordedEventAttributes"]["details"].values()
        for payload in detail["payloads"]
    ]
    return timers, patches


def test_a_referral_evaluating_before_last_calls_replays_with_no_last_call_timer() -> None:
    """The old path (recorded before last calls) and the new one side by side: the old run
    starts its 7-day decide timer at once, the new one the 6-day last call first."""
    old_timers, old_patches = timers_and_patches(HISTORIES_DIR / "expired.json")
    new_timers, new_patches = timers_and_patches(HISTORIES_DIR / "expired_after_last_call.json")
    assert not any("last-call" in p for p in old_patches)
    assert any("last-call" in p for p in new_patches)
    assert old_timers[-1].startswith("6048")  # 7 days, in seconds
    assert "518" in new_timers[-2][:3]  # 6 days (518,400 s), then the rest of the 7th


def test_a_referral_since_coalescing_has_its_last_call_with_one_marker() -> None:
    """Patches are cumulative: a run that records `archive-coalescing` has last calls (the
    6-day timer, then the rest of the 7th) with no marker of the last call's own, and
    replays only if the workflow asks no `last-call` patch of it."""
    timers, patches = timers_and_patches(HISTORIES_DIR / "expired_since_coalescing.json")
    assert patches == [
        json.dumps({"id": COALESCING_PATCH, "deprecated": False}, separators=(",", ":"))
    ]
    assert "518" in timers[-2][:3]


def archive_writes_and_patches(path: Path) -> tuple[list[str], list[str], list[str]]:
    """The labels of the archive writes and of the timers, and the patches, as recorded."""
    events = recorded(path)["events"]

    def label(event: dict[str, Any]) -> str:
        return str(json.loads(base64.b64decode(event["userMetadata"]["summary"]["data"])))

    writes = [
        label(e)
        for e in events
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
        and e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "record_referral"
    ]
    timers = [label(e) for e in events if e["eventType"] == "EVENT_TYPE_TIMER_STARTED"]
    return writes, timers, timers_and_patches(path)[1]


def test_a_burst_recorded_before_coalescing_replays_with_a_write_for_each_transition() -> None:
    """The same burst (interested, accept a moment after its write, won at once) before
    and since: a write for each transition then, the accept and the won in one now."""
    old_writes, old_timers, old_patches = archive_writes_and_patches(
        HISTORIES_DIR / "updates_burst.json"
    )
    new_writes, new_timers, new_patches = archive_writes_and_patches(
        HISTORIES_DIR / "updates_coalesced.json"
    )
    assert old_writes == [
        "archive: the new referral",
        "archive: transition 1",
        "archive: transition 2",
        "archive: transition 3",
    ]
    assert COALESCING_LABEL not in old_timers
    assert not any(COALESCING_PATCH in p for p in old_patches)
    assert new_writes == [
        "archive: the new referral",
        "archive: transition 1",
        "archive: transition 3",
    ]
    assert new_timers.count(COALESCING_LABEL) == 1
    # Patches are cumulative: the run has its last call without the last call's marker.
    assert [p for p in new_patches if "deprecated" in p] == [
        json.dumps({"id": COALESCING_PATCH, "deprecated": False}, separators=(",", ":"))
    ]
    assert any(t.startswith("last call at ") for t in new_timers)


def recorded(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def replayed(path: Path, data: dict[str, Any]) -> WorkflowReplayResult:
    """The replay of a history recorded in ``path`` (as ``data`` now has it): its failure
    is returned, not raised."""
    history = WorkflowHistory.from_json(workflow_id_of(path, data), data)
    return await replayer().replay_workflow(history, raise_on_replay_failure=False)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    result = await replayed(path, recorded(path))
    assert result.replay_failure is None, result.replay_failure


async def test_a_history_todays_workflow_would_not_write_fails_to_replay() -> None:
    """The guard can fail: a recorded run whose first activity is one the workflow never
    schedules there."""
    path = HISTORIES[0]
    data = recorded(path)
    scheduled = next(
        event["activityTaskScheduledEventAttributes"]
        for event in data["events"]
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    )
    scheduled["activityType"]["name"] = "send_fax"
    result = await replayed(path, data)
    assert isinstance(result.replay_failure, NondeterminismError)
    assert "send_fax" in str(result.replay_failure)


DELIVERY_HISTORIES = sorted((Path(__file__).parent / "histories" / "delivery").glob("*.json"))


@pytest.mark.parametrize("path", DELIVERY_HISTORIES, ids=[h.stem for h in DELIVERY_HISTORIES])
async def test_recorded_webhook_deliveries_replay(path: Path) -> None:
    """A paused, retried and removed endpoint's run, and a replay's
    (`python -m tests.histories.record_delivery`)."""
    history = WorkflowHistory.from_json(f"webhooks:{path.stem}", recorded(path))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


def test_the_delivery_histories_were_recorded() -> None:
    assert {h.stem for h in DELIVERY_HISTORIES} == {
        "paused_retried_removed",
        "replay",
        "unanswered",
    }
