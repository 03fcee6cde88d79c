"""The UI links `referrals ui` and `referrals dev` print: each link's query, run through
the client's `list_workflows` on the dev server, finds exactly the referrals it names."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from starter.settings import Settings
from starter.ui import ListFilter, list_link, ready_made_views
from tests.factories import fresh_rfi
from tests.servers import run_referrals, stop_running
from worker import build_worker
from workflows import RESPOND_BY_KEY, RFI_KEY, STATUS_KEY
from workflows.models import Status, StatusView, referral_workflow_id
from workflows.referral import ReferralWorkflow

Check = Callable[[WorkflowExecution], bool]


def test_a_filter_becomes_one_visibility_query() -> None:
    due = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    query = ListFilter(
        statuses=(Status.NEW, Status.EVALUATING),
        rfi_id="rfi-1001",
        partner_id="acme-consulting",
        due_before=due,
    ).query()
    assert query == (
        "WorkflowType = 'ReferralWorkflow' AND ReferralStatus IN ('New', 'Evaluating')"
        " AND RfiId = 'rfi-1001' AND PartnerId = 'acme-consulting'"
        " AND RespondBy < '2026-12-02T09:30:00Z'"
    )
    link = list_link("http://ui.example:8080/", "team a", query)
    parts = urlsplit(link)
    assert (parts.netloc, parts.path) == ("ui.example:8080", "/namespaces/team%20a/workflows")
    assert parse_qs(parts.query) == {"query": [query]}


def test_the_ready_made_views_cover_every_status_and_the_daily_ones() -> None:
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    views = dict(ready_made_views(now, "rfi-7"))
    assert [views[str(s)].statuses for s in Status] == [(s,) for s in Status]
    assert views["Answers due within 24 hours"].due_before == now + timedelta(hours=24)
    today = views["Missed or Expired, closed today (UTC)"]
    assert today.statuses == (Status.MISSED, Status.EXPIRED)
    assert today.closed_since == datetime(2026, 12, 1, tzinfo=UTC)
    assert views["RFI rfi-7: every partner"].rfi_id == "rfi-7"
    assert views["Failed to start"].statuses == ("Failed",)


@dataclass(frozen=True)
class Placed:
    statuses: dict[str, Status]  # by workflow id
    rfi_id: str  # the RFI sent to three partners
    due_soon: str  # the referral whose respond deadline falls in 12 hours
    missed: str
    failed: str  # sent, with the same deadline, to a partner that does not serve the region


@pytest.fixture(scope="module")
async def placed(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Placed]:
    """Five referrals, by workflow id: Evaluating, Skipped and New (not due for 72 hours)
    for one RFI, New and due in 12 hours for another, Missed today for a third; and a run
    that failed to start, which would have been due in 12 hours."""
    folder = tmp_path_factory.mktemp("ui-links")
    settings = Settings(
        REFERRALS_OUTBOX_DIR=folder / "outbox",
        REFERRALS_DATABASE_URL=f"sqlite:///{folder}/referrals.db",
    )
    client = dev_env.client
    queue = f"referrals-test-{uuid.uuid4()}"
    now = datetime.now(UTC)
    many, soon, late = (
        fresh_rfi(),
        fresh_rfi(received_at=(now - timedelta(hours=60)).isoformat()),
        fresh_rfi(received_at=(now - timedelta(days=4)).isoformat()),
    )
    with ThreadPoolExecutor(4) as executor:
        async with build_worker(client, settings, executor, task_queue=queue):
            await referrals.submit(
                client, many, ["acme-consulting", "globex", "initech"], task_queue=queue
            )
            await referrals.submit(client, soon, ["acme-consulting", "umbrella"], task_queue=queue)
            failed = referral_workflow_id(soon.id, "umbrella")
            await referrals.submit(client, late, ["acme-consulting"], task_queue=queue)
            await referrals.act(client, many.id, "acme-consulting", "interested", {})
            await referrals.act(client, many.id, "globex", "no_thanks", {})
            for rfi, partner in ((many, "globex"), (late, "acme-consulting")):
                handle = client.get_workflow_handle_for(
                    ReferralWorkflow.run, referral_workflow_id(rfi.id, partner)
                )
                assert isinstance(await handle.result(), StatusView)
            statuses = {
                referral_workflow_id(many.id, "acme-consulting"): Status.EVALUATING,
                referral_workflow_id(many.id, "globex"): Status.SKIPPED,
                referral_workflow_id(many.id, "initech"): Status.NEW,
                referral_workflow_id(soon.id, "acme-consulting"): Status.NEW,
                referral_workflow_id(late.id, "acme-consulting"): Status.MISSED,
            }
            yield Placed(
                statuses,
                many.id,
                referral_workflow_id(soon.id, "acme-consulting"),
                referral_workflow_id(late.id, "acme-consulting"),
                failed,
            )
            open_ones = [i for i, s in statuses.items() if s in (Status.NEW, Status.EVALUATING)]
            await stop_running(*(client.get_workflow_handle(i) for i in open_ones))


async def listed(
    client: Client, query: str, ours: set[str], expected: set[str]
) -> list[WorkflowExecution]:
    """What the query lists, once visibility shows ``expected`` among ``ours``."""
    for _ in range(40):
        found = [execution async for execution in client.list_workflows(query)]
        if {e.id for e in found} & ours == expected:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"{query}: listed {sorted({e.id for e in found} & ours)}, not {expected}")


def status_is(*statuses: Status) -> Check:
    names = {str(s) for s in statuses}
    return lambda e: e.typed_search_attributes.get(STATUS_KEY) in names


async def test_every_ready_made_view_lists_exactly_what_it_names(
    dev_env: WorkflowEnvironment, placed: Placed
) -> None:
    ours = {*placed.statuses, placed.failed}
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    expectations: dict[str, tuple[set[str], Check]] = {
        str(s): ({i for i, v in placed.statuses.items() if v is s}, status_is(s)) for s in Status
    }
    expectations["Answers due within 24 hours"] = (
        {placed.due_soon},
        lambda e: (
            (due := e.typed_search_attributes.get(RESPOND_BY_KEY)) is not None
            and due < now + timedelta(hours=24, minutes=1)
        ),
    )
    expectations["Missed or Expired, closed today (UTC)"] = (
        {placed.missed},
        lambda e: (
            status_is(Status.MISSED, Status.EXPIRED)(e)
            and e.status is not WorkflowExecutionStatus.RUNNING
            and e.close_time is not None
            and e.close_time >= today
        ),
    )
    expectations["Failed to start"] = (
        {placed.failed},
        lambda e: (
            e.status is WorkflowExecutionStatus.FAILED
            and e.typed_search_attributes.get(RESPOND_BY_KEY) is None
        ),
    )
    expectations[f"RFI {placed.rfi_id}: every partner"] = (
        {i for i in ours if i.split(":")[1] == placed.rfi_id},
        lambda e: e.typed_search_attributes.get(RFI_KEY) == placed.rfi_id,
    )
    views = ready_made_views(now, placed.rfi_id)
    assert [title for title, _ in views] == list(expectations)
    for title, view in views:
        expected, check = expectations[title]
        found = await listed(dev_env.client, view.query(), ours, expected)
        assert all(check(e) for e in found), title


async def test_the_command_prints_the_link_for_a_filter(
    dev_env: WorkflowEnvironment, placed: Placed
) -> None:
    rfi_id = placed.rfi_id
    environment = {**os.environ, "REFERRALS_UI_URL": "http://operators.example:8080"}
    done = run_referrals(
        environment, "ui", "--rfi", rfi_id, "--status", "New", "--status", "Skipped"
    )
    assert done.returncode == 0, done.stderr
    parts = urlsplit(done.stdout.strip())
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "http://operators.example:8080/namespaces/default/workflows"
    )
    [query] = parse_qs(parts.query)["query"]
    expected = {
        i
        for i, s in placed.statuses.items()
        if i.split(":")[1] == rfi_id and s in (Status.NEW, Status.SKIPPED)
    }
    assert len(expected) == 2
    found = await listed(dev_env.client, query, set(placed.statuses), expected)
    assert {e.id for e in found} == expected

    refused = run_referrals(environment, "ui", "--due-within", "tomorrow")
    assert refused.returncode == 1
    assert "not an ISO 8601 duration" in refused.stderr
