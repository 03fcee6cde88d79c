"""`referrals list`, `history` and `partner-stats` on an archive filled by real workflows.

One scenario, run once on the time-skipping server; every figure below is computed by hand
from it. Six referrals are received at T:

| referral | partner | what happens                               | first response | ends        |
|----------|---------|--------------------------------------------|----------------|-------------|
| a1       | acme    | interested T+2h, accept 1000 EUR, won 1200 | 2 h            | Won         |
| a2       | acme    | no_thanks T+30h                            | 30 h           | Skipped     |
| a3       | acme    | silence                                    | none           | Missed      |
| a4       | acme    | interested T+10h, accept 500 EUR           | 10 h           | Negotiating |
| g1       | globex  | interested T+1h, decline (no_capacity)     | 1 h            | Declined    |
| g2       | globex  | interested T+5h, then silence              | 5 h            | Expired     |
"""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine
from archive.store import ArchiveStore, ReferralFilter
from starter.settings import Settings
from tests.factories import SAMPLES, make_rfi
from tests.servers import (
    fresh_postgres_database,
    run_referrals,
    running_worker,
    start_referral,
    stop_running,
)

HOUR = 3600.0


@dataclass(frozen=True)
class Archive:
    url: str
    received_at: datetime
    rfi_ids: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def archive(
    request: pytest.FixtureRequest,
    time_skipping_env: WorkflowEnvironment,
    executor: ThreadPoolExecutor,
    tmp_path_factory: pytest.TempPathFactory,
) -> Archive:
    env = time_skipping_env
    folder = tmp_path_factory.mktemp("archive-commands")
    url = (
        f"sqlite:///{folder}/referrals.db"
        if request.param == "sqlite"
        else fresh_postgres_database(request.getfixturevalue("postgres_server_url"))
    )
    settings = Settings(
        REFERRALS_OUTBOX_DIR=folder / "outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_DATABASE_URL=url,
    )
    start = await env.get_current_time()
    close = str(start.date() + timedelta(days=60))
    partners = {
        "a1": "acme-consulting",
        "a2": "acme-consulting",
        "a3": "acme-consulting",
        "a4": "acme-consulting",
        "g1": "globex",
        "g2": "globex",
    }
    async with running_worker(env.client, settings, executor) as worker:
        handles = {}
        rfi_ids = {}
        for key, partner in partners.items():
            rfi = make_rfi(received_at=start.isoformat())
            rfi_ids[key] = rfi.id
            handles[key] = await start_referral(env.client, worker.task_queue, rfi, partner)
        accept = {"currency": "EUR", "estimated_close_date": close}
        timeline: list[tuple[float, str, str, dict[str, Any]]] = [
            (1, "g1", "interested", {}),
            (1, "g1", "decline", {"reason": "Out of scope", "reason_code": "no_capacity"}),
            (2, "a1", "interested", {}),
            (2, "a1", "accept", {**accept, "estimated_deal_value": "1000"}),
            (2, "a1", "won", {"final_deal_value": "1200"}),
            (5, "g2", "interested", {}),
            (10, "a4", "interested", {}),
            (10, "a4", "accept", {**accept, "estimated_deal_value": "500"}),
            (30, "a2", "no_thanks", {}),
        ]
        now = 0.0
        for at, key, action, payload in timeline:
            if at > now:
                await env.sleep(timedelta(hours=at - now))
                now = at
            await handles[key].signal(action, payload)
        for key in ("a1", "a2", "a3", "g1", "g2"):
            await handles[key].result()
        store = ArchiveStore(create_archive_engine(url))
        for _ in range(300):  # a4 stays open: wait for its Negotiating row, then end it
            if store.referrals(ReferralFilter(rfi_id=rfi_ids["a4"]))[0].status == "Negotiating":
                break
            await asyncio.sleep(0.05)
        await stop_running(handles["a4"])
    return Archive(url=settings.database_url, received_at=start, rfi_ids=rfi_ids)


def archive_command(archive: Archive, *args: str) -> Any:
    """The output of `referrals ARGS` on the archive (parsed with --json); it must succeed."""
    environment = {**os.environ, "REFERRALS_DATABASE_URL": archive.url, "COLUMNS": "200"}
    result = run_referrals(environment, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_partner_stats_match_the_hand_computed_figures(archive: Archive) -> None:
    stats = {s["partner_id"]: s for s in archive_command(archive, "partner-stats", "--json")}
    acme, globex = stats["acme-consulting"], stats["globex"]
    assert acme["referrals"] == 4
    # answered 2 h, 10 h and 30 h after they started (seconds after their receipt): the
    # median is 10 h, p90 (rank 3 of 3) 30 h
    assert acme["median_first_response_s"] == pytest.approx(10 * HOUR, abs=30)
    assert acme["p90_first_response_s"] == pytest.approx(30 * HOUR, abs=30)
    assert acme["answered_within_24h"] == 0.5  # a1, a4 of four
    assert acme["accept_rate"] == 0.5  # a1 (Won), a4 (Negotiating)
    assert (acme["skip_rate"], acme["miss_rate"]) == (0.25, 0.25)
    assert (acme["decline_rate"], acme["expire_rate"]) == (0.0, 0.0)
    assert acme["win_rate"] == 1.0  # Won among the closed deals: a1 Won, a4 still open
    assert (acme["declines_by_reason"], acme["losses_by_reason"]) == ({"unspecified": 1}, {})
    # a1: estimated 1000, final 1200; Won two hours after receipt, 60 days before its date
    slip = archive.received_at + timedelta(hours=2)
    days = (slip.date() - (archive.received_at.date() + timedelta(days=60))).days
    assert acme["forecast"] == {
        "value_by_currency": {"EUR": {"referrals": 1, "median_ratio": 1.2, "p90_ratio": 1.2}},
        "close_slip_referrals": 1,
        "median_close_slip_days": days,
        "p90_close_slip_days": days,
    }
    assert acme["pipeline_value"] == {"EUR": "500"}
    assert acme["won_value"] == {"EUR": "1200"}

    assert globex["referrals"] == 2
    assert globex["median_first_response_s"] == pytest.approx(3 * HOUR, abs=30)  # (1 h + 5 h)/2
    assert globex["p90_first_response_s"] == pytest.approx(5 * HOUR, abs=30)
    assert globex["answered_within_24h"] == 1.0
    assert (globex["accept_rate"], globex["win_rate"]) == (0.0, None)
    assert (globex["decline_rate"], globex["expire_rate"]) == (0.5, 0.5)
    assert (globex["pipeline_value"], globex["won_value"]) == ({}, {})
    assert globex["declines_by_reason"] == {"no_capacity": 1}
    assert globex["forecast"]["value_by_currency"] == {}

    *partners, everyone = archive_command(archive, "partner-stats", "--total", "--json")
    assert partners == list(stats.values())
    assert (everyone["partner_id"], everyone["referrals"]) == ("*", 6)
    assert everyone["declines_by_reason"] == {"no_capacity": 1, "unspecified": 1}
    assert everyone["median_first_response_s"] == pytest.approx(
        5 * HOUR, abs=30
    )  # 1, 2, 5, 10, 30 h

    only = archive_command(archive, "partner-stats", "--partner", "globex", "--json")
    assert [s["partner_id"] for s in only] == ["globex"]
    later = (archive.received_at + timedelta(minutes=1)).isoformat()
    assert archive_command(archive, "partner-stats", "--since", later, "--json") == []
    table = archive_command(archive, "partner-stats")
    assert "acme-consulting" in table
    # Counted from each referral's start, a moment after its receipt: about 10 hours.
    hours, rest = divmod(int(acme["median_first_response_s"]), 3600)
    assert f"{hours}h{rest // 60:02d}m" in table
    assert (hours, rest // 60) in ((9, 59), (10, 0))
    assert "globex: declined: no_capacity 1" in table
    assert "acme-consulting: final/estimated EUR: median x1.20, p90 x1.20 (1 won)" in table


def test_list_filters_pages_and_keeps_the_contract_keys(archive: Archive) -> None:
    everything = archive_command(archive, "list", "--json")
    assert len(everything) == 6
    assert {
        "rfi_id",
        "partner_id",
        "region",
        "status",
        "received_at",
        "updated_at",
        "closed_at",
        "estimated_deal_value",
        "currency",
        "final_deal_value",
    } <= set(everything[0])
    by_rfi = {r["rfi_id"]: r for r in everything}
    won = by_rfi[archive.rfi_ids["a1"]]
    assert (
        won["status"],
        won["estimated_deal_value"],
        won["final_deal_value"],
        won["currency"],
    ) == ("Won", "1000", "1200", "EUR")
    assert won["closed_at"] is not None
    open_one = by_rfi[archive.rfi_ids["a4"]]
    assert (open_one["status"], open_one["closed_at"]) == ("Negotiating", None)

    acme = archive_command(archive, "list", "--partner", "acme-consulting", "--json")
    assert sorted(r["status"] for r in acme) == ["Missed", "Negotiating", "Skipped", "Won"]
    assert [
        r["partner_id"] for r in archive_command(archive, "list", "--status", "Expired", "--json")
    ] == ["globex"]
    assert archive_command(archive, "list", "--region", "apac", "--json") == []
    assert len(archive_command(archive, "list", "--rfi", archive.rfi_ids["g1"], "--json")) == 1
    until = archive.received_at.isoformat()
    assert archive_command(archive, "list", "--until", until, "--json") == []

    first = archive_command(archive, "list", "--limit", "4", "--json")
    last = first[-1]["workflow_id"]
    second = archive_command(archive, "list", "--limit", "4", "--after", last, "--json")
    assert [r["workflow_id"] for r in first + second] == [r["workflow_id"] for r in everything]
    assert f"next page: --after {last}" in archive_command(archive, "list", "--limit", "4")
    unknown = run_referrals(
        {**os.environ, "REFERRALS_DATABASE_URL": archive.url},
        "list",
        "--after",
        "referral-nope-nope",
    )
    assert unknown.returncode != 0
    assert "no archived referral referral-nope-nope to page after" in unknown.stderr


def test_list_by_reason_code_and_flag(archive: Archive) -> None:
    def rfis(*args: str) -> list[str]:
        return [r["rfi_id"] for r in archive_command(archive, "list", *args, "--json")]

    assert rfis("--reason", "no_capacity") == [archive.rfi_ids["g1"]]
    assert rfis("--reason", "unspecified") == [archive.rfi_ids["a2"]]  # no_thanks, no code
    assert rfis("--reason", "spam_or_abuse") == rfis("--flagged") == []
    assert all(r["flagged"] is False for r in archive_command(archive, "list", "--json"))
    wrong = run_referrals(
        {**os.environ, "REFERRALS_DATABASE_URL": archive.url}, "list", "--reason", "too_busy"
    )
    assert wrong.returncode == 1
    assert "not a reason code" in wrong.stderr
    assert "no_capacity" in wrong.stderr
    declined = archive_command(archive, "history", archive.rfi_ids["g1"], "globex", "--json")
    assert [t["reason_code"] for t in declined["transitions"]] == [None, "no_capacity"]
    table = archive_command(archive, "history", archive.rfi_ids["g1"], "globex")
    assert "no_capacity: Out of scope" in table


def test_history_is_the_timeline_with_causes_and_times(archive: Archive) -> None:
    expired = archive_command(archive, "history", archive.rfi_ids["g2"], "globex", "--json")
    assert expired["status"] == "Expired"
    steps = [
        (t["from"], t["to"], t["cause"]["kind"], t["cause"]["name"]) for t in expired["transitions"]
    ]
    assert steps == [
        ("New", "Evaluating", "action", "interested"),
        ("Evaluating", "Expired", "deadline", "decide"),
    ]
    entered = datetime.fromisoformat(expired["transitions"][0]["effective_at"])
    assert datetime.fromisoformat(expired["transitions"][1]["effective_at"]) == (
        entered + timedelta(days=7)
    )

    missed = archive_command(archive, "history", archive.rfi_ids["a3"], "acme-consulting")
    assert "Missed" in missed
    assert "deadline: respond" in missed
