"""What an operator sees of a referral in the Temporal UI, on the dev server: the summary,
the current details (through Temporal's metadata query, as the UI reads them) and the labels
on the timeline's timers and activities, with no customer contact anywhere in them."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from tests.factories import ACCEPT, DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, fresh_rfi
from workflows.metadata import COALESCING_LABEL
from workflows.models import Rfi, Status, StatusView
from workflows.referral import ReferralWorkflow

METADATA_QUERY = "__temporal_workflow_metadata"
PARTNER = "acme-consulting"


Handle = WorkflowHandle[ReferralWorkflow, StatusView]


async def submitted(client: Client, queue: str, **changes: Any) -> tuple[Rfi, Handle]:
    rfi = fresh_rfi(customer=DISTINCTIVE_CUSTOMER, **changes)
    await referrals.submit(client, rfi, [PARTNER], task_queue=queue)
    return rfi, client.get_workflow_handle_for(ReferralWorkflow.run, f"referral:{rfi.id}:{PARTNER}")


async def details(handle: Handle) -> str:
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    assert isinstance(metadata, WorkflowMetadata)
    return metadata.current_details


async def labels(client: Client, handle: Handle) -> dict[str, list[str]]:
    """The summaries on the history's events, by event type (as the timeline shows them)."""
    found: dict[str, list[str]] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            [text] = await client.data_converter.decode([event.user_metadata.summary], [str])
            found.setdefault(event.WhichOneof("attributes") or "", []).append(text)
    return found


def at(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


async def test_the_ui_shows_the_referral_at_every_step_and_never_the_customer(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    client = dev_env.client
    rfi, handle = await submitted(client, queue)
    shown: list[str] = []

    description = await handle.describe()
    title = await description.static_summary()
    assert title == f"{rfi.id} -> {PARTNER} (emea / Berlin)"
    shown.append(title)

    new = await details(handle)
    for _ in range(40):  # until the contact is looked up and the lead is on its way
        if "- **Emails:**" in new:
            break
        await asyncio.sleep(0.25)
        new = await details(handle)
    respond_due = rfi.received_at + timedelta(hours=72)
    assert new.startswith("- **Status:** New\n")
    assert f"respond: Missed at {at(respond_due)} unless the partner answers" in new
    reminder = rfi.received_at + timedelta(hours=24)
    assert f"- **Reminder:** to the partner at {at(reminder)}" in new
    shown.append(new)

    evaluating = await handle.execute_update("interested", result_type=StatusView)
    assert evaluating.status is Status.EVALUATING
    text = await details(handle)
    assert evaluating.deadline is not None
    assert f"decide: Expired at {at(evaluating.deadline.due_at)}" in text
    assert "New -> Evaluating by interested" in text
    last_call = evaluating.deadline.due_at - timedelta(hours=24)
    assert f"- **Reminder:** last call to the partner at {at(last_call)}" in text
    shown.append(text)

    await handle.execute_update("accept", ACCEPT, result_type=StatusView)
    text = await details(handle)
    assert "- **Status:** Negotiating\n" in text
    assert "- **Deal:** 25000.00 EUR estimated, closing 2027-03-31" in text
    assert "Deadline" not in text
    shown.append(text)

    await handle.execute_update("won", {"final_deal_value": "26500"}, result_type=StatusView)
    assert (await handle.result()).status is Status.WON
    won = await details(handle)
    assert "- **Status:** Won\n" in won
    assert "won at 26500 EUR" in won
    assert "Deadline" not in won
    assert "- **Emails:** lead sent, details sent" in won
    shown.append(won)

    timeline = await labels(client, handle)
    # The actions came in a burst: an archive write may wait a second for the next one.
    timers = timeline["timer_started_event_attributes"]
    assert [t for t in timers if t != COALESCING_LABEL] == [
        f"reminder at {at(reminder)}",
        f"last call at {at(last_call)}",
    ]
    activities = timeline["activity_task_scheduled_event_attributes"]
    assert "lead email to the partner" in activities
    assert "details email to the partner" in activities
    assert "archive: the new referral" in activities
    assert any(label.startswith("archive: transition ") for label in activities)
    shown += [text for texts in timeline.values() for text in texts]
    for trace in DISTINCTIVE_TRACES:
        assert trace not in "\n".join(shown)


async def test_a_missed_referral_shows_what_missed_it(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    """Started four days after it was received: Missed at once, the customer rerouted."""
    received = datetime.now(UTC) - timedelta(days=4)
    rfi, handle = await submitted(dev_env.client, queue, received_at=received.isoformat())
    assert (await handle.result()).status is Status.MISSED
    text = await details(handle)
    assert text.startswith("- **Status:** Missed\n")
    due = rfi.received_at + timedelta(hours=72)
    assert f"- **Last transition:** New -> Missed by respond deadline at {at(due)}" in text
    assert "- **Emails:** reroute sent" in text
    timeline = await labels(dev_env.client, handle)
    assert "reroute email to the customer" in timeline["activity_task_scheduled_event_attributes"]
    scheduled = timeline["activity_task_scheduled_event_attributes"]
    assert "the RFI's other referrals, and partner suggestions" in scheduled
    everything = "\n".join([text, *(t for texts in timeline.values() for t in texts)])
    for trace in DISTINCTIVE_TRACES:
        assert trace not in everything
