"""Reroute suggestions: the pure ranking, the directory's coverage, and a real customer email."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.directory import DirectoryFile
from archive.database import create_archive_engine, upgrade
from archive.stats import PartnerStats, rank_by_responsiveness
from archive.store import ArchiveStore
from starter.settings import Settings
from tests.emails import body, parse_eml
from tests.factories import SAMPLES, act, make_rfi, sample_contact
from tests.servers import running_worker, start_referral
from workflows.lifecycle import Referral
from workflows.models import PartnerContact, Rfi, Status
from workflows.visibility import partners_of_rfi

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
HOUR = 3600.0
INITECH_BERLIN = sample_contact("initech")


def stats(partner: str, referrals: int, within_24h: float, median: float | None) -> PartnerStats:
    return PartnerStats(
        partner_id=partner,
        referrals=referrals,
        answered_within_24h=within_24h,
        median_first_response_s=median,
    )


def test_ranking_prefers_answers_within_24_hours_then_the_faster_median() -> None:
    ranked = rank_by_responsiveness(
        ["slow", "fast", "faster", "sure", "new"],
        [
            stats("slow", 10, 0.5, 2 * HOUR),
            stats("fast", 10, 0.9, 5 * HOUR),
            stats("faster", 4, 0.9, 1 * HOUR),
            stats("sure", 3, 1.0, 20 * HOUR),
        ],
        limit=5,
    )
    assert ranked == ["sure", "faster", "fast", "slow", "new"]


def test_ranking_puts_partners_without_history_last_and_keeps_three() -> None:
    history = [stats("b", 2, 0.0, None), stats("ghost", 0, 0.0, None)]
    assert rank_by_responsiveness(["z", "ghost", "b", "a", "b"], history) == ["b", "a", "ghost"]
    assert rank_by_responsiveness([], history) == []


def test_ranking_ties_are_stable_by_id() -> None:
    same = [stats(p, 1, 1.0, HOUR) for p in ("c", "a", "b")]
    assert rank_by_responsiveness(["c", "b", "a"], same) == ["a", "b", "c"]


def test_who_serves_a_region_and_location() -> None:
    directory = DirectoryFile(SAMPLES / "partners.json").load()
    berlin = {p.id for p in directory.partners_serving("emea", "Berlin")}
    assert berlin == {"acme-consulting", "globex", "initech"}  # initech: Berlin profile only
    paris = {p.id for p in directory.partners_serving("emea", "Paris")}
    assert paris == {"acme-consulting", "globex"}
    assert {p.id for p in directory.partners_serving("amer", None)} == {"globex"}
    assert {p.id for p in directory.partners_serving("amer", "Toronto")} == {"globex", "umbrella"}


# --- In a real reroute email --------------------------------------------------------------


def archive_history(store: ArchiveStore, partner: str, waits_h: list[float]) -> None:
    """Past referrals of `partner`, answered after these many hours."""
    contact = PartnerContact(
        partner_id=partner,
        partner_name=partner,
        contact_name="C",
        contact_email="c@example.com",
        region="emea",
    )
    for wait in waits_h:
        referral = Referral(make_rfi(received_at=T0.isoformat()), partner)
        referral.start(contact, T0)
        act(referral, "interested", None, T0 + timedelta(hours=wait))
        store.record(referral.view())


def reroute_text(outbox: Path, workflow_id: str) -> str:
    [path] = outbox.glob(f"{workflow_id}.*-reroute.eml")
    return body(parse_eml(path), "plain")


@pytest.fixture
def store(settings: Settings) -> ArchiveStore:
    engine = create_archive_engine(settings.database_url)
    upgrade(engine)
    return ArchiveStore(engine)


async def reroute_after_no_thanks(
    client: Client, rfi: Rfi, partner: str, task_queue: str, outbox: Path
) -> str:
    """The text of the reroute the customer gets once ``partner`` said no thanks."""
    handle = await start_referral(client, task_queue, rfi, partner, with_attributes=True)
    await handle.signal("no_thanks")
    assert (await handle.result()).status is Status.SKIPPED
    return reroute_text(outbox, handle.id)


# On the dev server: suggestions ask Temporal's visibility which partners an RFI went to,
# which the time-skipping server does not implement.
async def test_the_customer_is_offered_the_most_responsive_partners_not_yet_asked(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    store: ArchiveStore,
) -> None:
    client = dev_env.client
    archive_history(store, "globex", [30, 40])  # slow to answer
    archive_history(store, "initech", [1, 2])  # answers within the hour
    now = datetime.now(UTC).isoformat()
    first, second = make_rfi(received_at=now), make_rfi(received_at=now)
    async with running_worker(client, settings, executor) as worker:
        text = await reroute_after_no_thanks(
            client, first, "acme-consulting", worker.task_queue, settings.outbox_dir
        )
        assert "  - Initech Solutions\n  - Globex Partners\n" in text
        assert "Umbrella" not in text  # serves amer only
        assert "Acme" not in text.split("Your request")[1]  # the partner that said no

        # The second RFI also went to initech, whose referral has not even started to run
        # (no worker polls its queue): no archive row, yet it is not suggested again.
        waiting = await start_referral(
            client, f"nobody-polls-{uuid.uuid4()}", second, "initech", with_attributes=True
        )
        assert store.partners_of_rfi(second.id) == set()
        again = await reroute_after_no_thanks(
            client, second, "acme-consulting", worker.task_queue, settings.outbox_dir
        )
        await waiting.terminate("test finished")
    assert "  - Globex Partners\n" in again
    assert "Initech" not in again


async def test_with_no_candidate_left_the_email_says_so(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    rfi = make_rfi(region="apac", location=None, received_at=datetime.now(UTC).isoformat())
    async with running_worker(dev_env.client, settings, executor) as worker:
        text = await reroute_after_no_thanks(
            dev_env.client, rfi, "initech", worker.task_queue, settings.outbox_dir
        )
    assert "Every partner in the marketplace that serves your region already has your" in text


async def test_a_partner_only_the_archive_remembers_for_the_rfi_is_not_suggested_again(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    store: ArchiveStore,
) -> None:
    client = dev_env.client
    received = datetime.now(UTC) - timedelta(hours=1)
    rfi = make_rfi(received_at=received.isoformat())  # emea, Berlin
    # The RFI went to initech, which serves Berlin, and that referral ran and finished
    # (55 minutes ago): its history is gone from Temporal (retention), only the archive
    # still has it.
    earlier = Referral(rfi, "initech")
    earlier.start(INITECH_BERLIN, rfi.received_at)
    act(earlier, "no_thanks", None, rfi.received_at + timedelta(minutes=5))
    store.record(earlier.view())
    assert store.partners_of_rfi(rfi.id) == {"initech"}
    assert await partners_of_rfi(client, rfi.id) == set()
    async with running_worker(client, settings, executor) as worker:
        text = await reroute_after_no_thanks(
            client, rfi, "acme-consulting", worker.task_queue, settings.outbox_dir
        )
    assert "  - Globex Partners\n" in text
    assert "Initech" not in text  # suggested were the archive not asked
