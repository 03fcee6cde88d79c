"""Record the histories that tests/test_replay.py replays:
`python -m tests.histories.record [PATH ...]` (every path without one).

Every path runs once for real, deadlines on the time-skipping server and updates on the dev
server, and its history is written to tests/histories/<path>.json. Record again only when
a change is meant to be incompatible with running referrals (see "Changing the workflow
safely" in docs/operations.md).
"""

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starter.referrals import submit
from starter.settings import Settings
from tests.factories import SAMPLES, make_rfi
from tests.servers import start_dev_server, start_time_skipping
from worker import build_worker
from workflows.models import ReferralInput, StatusView
from workflows.referral import ReferralWorkflow

HERE = Path(__file__).resolve().parent
Sleep = Callable[[timedelta], Awaitable[None]]
ACCEPT = {"estimated_deal_value": "125000.10", "currency": "EUR"}  # + a close date ahead

# Each path: the final status, then (signal or update, action, payload, hours to wait first).
EXPECTED = {
    "won": "Won",
    "lost": "Lost",
    "skipped": "Skipped",
    "missed_after_reminder": "Missed",
    "declined": "Declined",
    "expired": "Expired",
    "refused_signals": "Skipped",
    "updates": "Won",
    "expired_after_last_call": "Expired",
    "declined_as_spam": "Declined",
    "updates_coalesced": "Won",
    "expired_since_coalescing": "Expired",
    "skipped_since_outlook": "Skipped",
    "lost_since_outlook": "Lost",
}
PATHS: dict[str, list[tuple[str, str, Any, float]]] = {
    "won": [
        ("signal", "interested", {}, 2),
        ("signal", "accept", ACCEPT, 1),
        ("signal", "won", {"final_deal_value": 130000.55}, 1),
    ],
    "lost": [
        ("signal", "interested", {}, 30),
        ("signal", "accept", ACCEPT, 0),
        ("signal", "lost", {"reason": "Budget cut"}, 24),
    ],
    "skipped": [("signal", "no_thanks", {"reason": "Fully booked"}, 1)],
    "missed_after_reminder": [],
    "declined": [("signal", "interested", {}, 1), ("signal", "decline", {}, 1)],
    "expired": [("signal", "interested", {}, 5)],
    # Recorded with the last call and reason codes (the histories above predate them).
    "expired_after_last_call": [("signal", "interested", {}, 5)],
    # Since: the last call with the coalescing patch's marker alone (patches are cumulative).
    "expired_since_coalescing": [("signal", "interested", {}, 5)],
    "declined_as_spam": [
        ("signal", "interested", {}, 1),
        ("signal", "decline", {"reason_code": "spam_or_abuse"}, 1),
    ],
    "refused_signals": [
        ("signal", "accept", {}, 1),
        ("signal", "interested", "bare", 0),
        ("signal", "escalate", {}, 0),
        ("signal", "no_thanks", {}, 0),
    ],
    "updates": [
        ("update", "interested", {}, 0),
        ("update", "accept", ACCEPT, 0),
        ("update", "won", {}, 0),
    ],
    # Recorded since an archive write waits for a burst's next transition: the accept a
    # moment after the interested's write, the won right after it. `updates_burst.json` is
    # the same path recorded with `workflows.archiving.COALESCE_WITHIN` set to zero and the
    # last call's patch asked alone in `ReferralWorkflow._act`: the commands of before.
    "updates_coalesced": [
        ("update", "interested", {}, 0),
        ("update", "accept", ACCEPT, 0.3 / 3600),
        ("update", "won", {}, 0),
    ],
    # Recorded since a reroute first reads how the RFI's other referrals stand (visibility,
    # on the dev server): sent after a refusal, withheld after a loss alone.
    "skipped_since_outlook": [("update", "no_thanks", {}, 0)],
    "lost_since_outlook": [
        ("update", "interested", {}, 0),
        ("update", "accept", ACCEPT, 0),
        ("update", "lost", {}, 0),
    ],
}
# Updates, and reroutes that read visibility; the others skip time.
ON_DEV_SERVER = {"updates", "updates_coalesced", "skipped_since_outlook", "lost_since_outlook"}


async def run_path(env: WorkflowEnvironment, queue: str, name: str, sleep: Sleep) -> str:
    client = env.client
    now = await env.get_current_time()
    rfi = make_rfi(
        id=f"history-{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}", received_at=now.isoformat()
    )
    referral = ReferralInput(rfi=rfi, partner_id="acme-consulting")
    handle: WorkflowHandle[ReferralWorkflow, StatusView]
    if name in ON_DEV_SERVER:  # the `referrals submit` path, search attributes set at start
        await submit(client, rfi, [referral.partner_id], task_queue=queue)
        handle = client.get_workflow_handle_for(ReferralWorkflow.run, referral.workflow_id)
    else:  # a bare start, as a backend in another language may make it
        handle = await client.start_workflow(
            ReferralWorkflow.run, referral, id=referral.workflow_id, task_queue=queue
        )
    await sleep(timedelta(seconds=2))
    close = str((now + timedelta(days=365)).date())
    for kind, action, payload, hours in PATHS[name]:
        if action == "accept" and payload:
            payload = {**payload, "estimated_close_date": close}
        await sleep(timedelta(hours=hours))
        if kind == "update":
            await handle.execute_update(action, payload)
        else:
            await handle.signal(action, payload)
    final = await handle.result()
    if final.status != EXPECTED[name]:
        raise RuntimeError(f"{name} ended {final.status}, not {EXPECTED[name]}: not recorded")
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    return handle.id


async def record(env: WorkflowEnvironment, names: list[str], sleep: Sleep) -> None:
    settings = Settings(
        REFERRALS_OUTBOX_DIR=HERE / ".outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_DATABASE_URL=f"sqlite:///{HERE}/.record.db",
    )
    queue = f"record-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(env.client, settings, executor, task_queue=queue):
            for name in names:
                print(f"recorded {name}: {await run_path(env, queue, name, sleep)}")


async def main(names: list[str]) -> None:
    """Record the paths named (all of them without a name)."""
    names = names or list(PATHS)
    skipping = await start_time_skipping()
    async with skipping:
        await record(skipping, [n for n in names if n not in ON_DEV_SERVER], skipping.sleep)
    if on_dev_server := [n for n in names if n in ON_DEV_SERVER]:
        local = await start_dev_server()
        async with local:
            await record(local, on_dev_server, lambda span: asyncio.sleep(span.total_seconds()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
