"""End to end on the dev server: `python worker.py`, the `referrals` command, the outbox."""

import asyncio
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecution
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from starter.dev import free_port
from starter.processes import running, stop
from starter.referrals import submit
from tests.factories import ROOT, act, make_rfi, rfi_data
from tests.servers import WORKER_COMMAND, run_referrals, worker_environment
from workflows import REGION_KEY, RESPOND_BY_KEY, STATUS_KEY
from workflows.lifecycle import Referral
from workflows.models import PartnerContact


@pytest.fixture(scope="module")
def environment(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("worker")
    return worker_environment(dev_env, folder, REFERRALS_METRICS_PORT=str(free_port()))


@pytest.fixture(scope="module")
def outbox(environment: dict[str, str]) -> Path:
    return Path(environment["REFERRALS_OUTBOX_DIR"])


@pytest.fixture(scope="module")
def worker_process(environment: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """worker.py itself, as `python worker.py` runs it."""
    with running(WORKER_COMMAND, env=environment, cwd=ROOT) as child:
        yield child


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_rfi(tmp_path: Path, stamped: bool = True, **changes: Any) -> tuple[str, Path]:
    """An RFI file received now; unstamped, without received_at, as samples/rfi.json."""
    data = rfi_data(received_at=datetime.now(UTC).isoformat(), **changes)
    if not stamped:
        del data["received_at"]
    path = tmp_path / "rfi.json"
    path.write_text(json.dumps(data))
    return str(data["id"]), path


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_submit_act_status_list_and_emails(
    environment: dict[str, str],
    worker_process: subprocess.Popen[bytes],
    tmp_path: Path,
    outbox: Path,
) -> None:
    rfi_id, path = write_rfi(tmp_path, stamped=False)
    submitted = datetime.now(UTC)
    first = run_referrals(
        environment, "submit", str(path), "--partners", "acme-consulting,globex,initech"
    )
    assert "3 started, 0 already existed" in ok(first)
    assert f"no received_at in {path}: received now, " in first.stderr

    # umbrella does not serve the region: its run fails at once, and submit says so.
    again = run_referrals(
        environment,
        "submit",
        str(path),
        "--partners",
        "acme-consulting,globex,initech,umbrella",
        "--json",
    )
    assert again.returncode == 1
    summary = json.loads(again.stdout)
    assert sorted(summary["existing"]) == [
        f"referral:{rfi_id}:{p}" for p in ("acme-consulting", "globex", "initech")
    ]
    assert summary["started"] == []
    [(failed, why)] = summary["failed"].items()
    assert failed == f"referral:{rfi_id}:umbrella"
    assert "does not serve emea/Berlin" in why

    interested = json.loads(
        ok(run_referrals(environment, "act", rfi_id, "acme-consulting", "interested"))
    )
    assert interested["status"] == "Evaluating"
    # The file said nothing of when: submit stamped the moment it sent the RFI.
    received = datetime.fromisoformat(interested["received_at"])
    assert submitted <= received <= submitted + timedelta(seconds=30)
    assert interested["customer"]["email"] == "maria.lopez@lopez-logistics.example"
    close = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
    accepted = json.loads(
        ok(
            run_referrals(
                environment,
                "act",
                rfi_id,
                "acme-consulting",
                "accept",
                "--deal-value",
                "98000.50",
                "--currency",
                "EUR",
                "--close-date",
                close,
            )
        )
    )
    assert accepted["status"] == "Negotiating"
    assert accepted["deal"] == {
        "estimated_deal_value": "98000.50",
        "currency": "EUR",
        "estimated_close_date": close,
        "final_deal_value": None,
    }
    ok(run_referrals(environment, "act", rfi_id, "globex", "no_thanks", "--reason", "Busy"))

    refused = run_referrals(
        environment,
        "act",
        rfi_id,
        "initech",
        "accept",
        "--deal-value",
        "5",
        "--currency",
        "EUR",
        "--close-date",
        close,
    )
    assert refused.returncode == 1
    assert "New" in refused.stderr
    assert "interested, no_thanks" in refused.stderr
    assert refused.stderr.count("\n") == 1

    closed = run_referrals(environment, "act", rfi_id, "globex", "interested")
    assert closed.returncode == 1
    assert "closed (Skipped)" in closed.stderr

    everyone = run_referrals(environment, "status", rfi_id)
    views = json.loads(ok(everyone))
    assert [(v["partner_id"], v["status"]) for v in views] == [
        ("acme-consulting", "Negotiating"),
        ("globex", "Skipped"),
        ("initech", "New"),
    ]
    assert f"referral:{rfi_id}:umbrella" in everyone.stderr
    assert "does not serve emea/Berlin" in everyone.stderr
    one = json.loads(ok(run_referrals(environment, "status", rfi_id, "initech")))
    assert one["status"] == "New"
    assert one["customer"] is None
    assert one["deadline"]["kind"] == "respond"

    listed = wait_for(
        lambda: json.loads(
            ok(
                run_referrals(
                    environment, "list", "--rfi", rfi_id, "--status", "Negotiating", "--json"
                )
            )
        )
    )
    assert [(r["partner_id"], r["region"]) for r in listed] == [("acme-consulting", "emea")]
    table = ok(run_referrals(environment, "list", "--partner", "globex", "--rfi", rfi_id))
    assert "Skipped" in table

    files = wait_for(
        lambda: (
            sorted(p.name for p in outbox.glob(f"referral:{rfi_id}:*.eml"))
            if len(list(outbox.glob(f"referral:{rfi_id}:*.eml"))) >= 4
            else None
        )
    )
    assert files is not None
    assert f"referral:{rfi_id}:acme-consulting.2-details.eml" in files
    # globex passed while acme-consulting negotiates: the customer is not asked to choose.
    skipped = json.loads(ok(run_referrals(environment, "status", rfi_id, "globex")))
    assert [(e["kind"], e["outcome"]) for e in skipped["emails"]] == [
        ("lead", "sent"),
        ("reroute", "withheld"),
    ]
    assert f"referral:{rfi_id}:globex.2-reroute.eml" not in files


async def visible_workflows(client: Client, query: str) -> list[WorkflowExecution]:
    """What visibility lists for the query, once it lists anything (within 10 s)."""
    for _ in range(100):
        found = [w async for w in client.list_workflows(query)]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


async def test_search_attributes_are_kept_current_for_operators(
    dev_env: WorkflowEnvironment,
    environment: dict[str, str],
    worker_process: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    rfi_id, path = write_rfi(tmp_path)
    ok(run_referrals(environment, "submit", str(path), "--partners", "acme-consulting,initech"))
    ok(run_referrals(environment, "act", rfi_id, "acme-consulting", "interested"))
    client: Client = dev_env.client
    query = (
        f"RfiId = '{rfi_id}' AND PartnerId = 'acme-consulting' AND Region = 'emea' "
        "AND ReferralStatus = 'Evaluating'"
    )
    found = await visible_workflows(client, query)
    assert len(found) == 1
    respond_by = found[0].typed_search_attributes.get(RESPOND_BY_KEY)
    assert respond_by is not None
    assert respond_by > datetime.now(UTC) + timedelta(days=6)
    new = [w async for w in client.list_workflows(f"RfiId = '{rfi_id}' AND PartnerId = 'initech'")]
    assert new[0].typed_search_attributes.get(STATUS_KEY) == "New"


async def test_a_submitted_referral_is_visible_to_operators_before_any_worker_runs_it(
    dev_env: WorkflowEnvironment,
) -> None:
    client: Client = dev_env.client
    received = datetime.now(UTC).replace(microsecond=0)
    rfi = make_rfi(id=f"unpolled-{uuid.uuid4().hex[:8]}", received_at=received.isoformat())
    queue = f"nobody-polls-{uuid.uuid4()}"  # the workflow never runs a task
    await submit(client, rfi, ["acme-consulting"], task_queue=queue)
    query = f"RfiId = '{rfi.id}' AND PartnerId = 'acme-consulting' AND ReferralStatus = 'New'"
    found = await visible_workflows(client, query)
    assert len(found) == 1
    attributes = found[0].typed_search_attributes
    assert attributes.get(REGION_KEY) == rfi.region
    assert attributes.get(RESPOND_BY_KEY) == received + timedelta(hours=72)
    await client.get_workflow_handle(found[0].id).terminate("test over")


def test_command_errors_are_one_line(environment: dict[str, str], tmp_path: Path) -> None:
    unreachable = {**environment, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    down = run_referrals(unreachable, "status", "rfi-1")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:1")
    assert "Traceback" not in down.stderr

    missing = run_referrals(environment, "submit", str(tmp_path / "nope.json"), "--partners", "a")
    assert missing.returncode == 1
    assert "cannot read RFI file" in missing.stderr
    (tmp_path / "bad.json").write_text('{"id": ')
    bad = run_referrals(environment, "submit", str(tmp_path / "bad.json"), "--partners", "a")
    assert bad.returncode == 1
    assert "not valid JSON" in bad.stderr
    # What an editor set to Latin-1 saves.
    latin1 = json.dumps(rfi_data(need="Migration für München"), ensure_ascii=False)
    (tmp_path / "latin1.json").write_bytes(latin1.encode("latin-1"))
    not_utf8 = run_referrals(
        environment, "submit", str(tmp_path / "latin1.json"), "--partners", "a"
    )
    assert not_utf8.returncode == 1
    assert "is not UTF-8: byte 0xfc at offset" in not_utf8.stderr
    invalid = run_referrals(
        environment,
        "submit",
        "-",
        "--partners",
        "a",
        stdin=json.dumps(rfi_data(received_at="yesterday")),
    )
    assert invalid.returncode == 1
    assert "received_at" in invalid.stderr
    bad_id = run_referrals(environment, "status", "rfi 1")
    assert bad_id.returncode == 1
    assert "not a valid id" in bad_id.stderr
    for stderr in (missing.stderr, bad.stderr, not_utf8.stderr, invalid.stderr, bad_id.stderr):
        assert stderr.count("\n") == 1
        assert "Traceback" not in stderr


def test_unknown_referral_is_reported(
    environment: dict[str, str], worker_process: subprocess.Popen[bytes]
) -> None:
    result = run_referrals(environment, "act", "no-such-rfi", "acme-consulting", "interested")
    assert result.returncode == 1
    assert "no referral referral:no-such-rfi:acme-consulting" in result.stderr
    none = run_referrals(environment, "status", "no-such-rfi")
    assert none.returncode == 1
    assert "no referrals for RFI no-such-rfi" in none.stderr


def test_submit_never_restarts_a_referral_temporal_forgot_but_the_archive_kept(
    environment: dict[str, str], worker_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    rfi_id, path = write_rfi(tmp_path)
    # A referral that closed long ago: Temporal forgot it, the archive did not.
    forgotten = Referral(make_rfi(id=rfi_id, received_at="2025-01-06T09:00:00Z"), "globex")
    forgotten.start(
        PartnerContact(
            partner_id="globex",
            partner_name="Globex Partners",
            contact_name="S",
            contact_email="s@globex.example",
            region="emea",
        ),
        datetime(2025, 1, 6, 9, tzinfo=UTC),
    )
    act(forgotten, "no_thanks", None, datetime(2025, 1, 6, 12, tzinfo=UTC))
    engine = create_archive_engine(environment["REFERRALS_DATABASE_URL"])
    upgrade(engine)
    ArchiveStore(engine).record(forgotten.view())
    engine.dispose()

    out = ok(run_referrals(environment, "submit", str(path), "--partners", "globex,initech"))
    assert f"already exists referral:{rfi_id}:globex" in out
    assert f"started        referral:{rfi_id}:initech" in out
    assert run_referrals(environment, "status", rfi_id, "globex").returncode == 1  # never started


def test_the_worker_serves_sdk_and_referral_metrics(
    environment: dict[str, str], worker_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{environment['REFERRALS_METRICS_PORT']}/metrics"
    rfi_id, path = write_rfi(tmp_path)
    ok(run_referrals(environment, "submit", str(path), "--partners", "globex"))
    before = refused_updates(url)  # other tests share this worker and its counters
    for _ in range(2):  # refused before history: the metric is all that counts them
        refused = run_referrals(environment, "act", rfi_id, "globex", "won")
        assert refused.returncode == 1
        assert "not allowed while New" in refused.stderr
    acted = ok(
        run_referrals(
            environment, "act", rfi_id, "globex", "no_thanks", "--reason-code", "no_capacity"
        )
    )
    assert json.loads(acted)["transitions"][-1]["reason_code"] == "no_capacity"

    def scrape() -> str | None:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        # The SDK counts the workflow once it completes, after the Skipped transition's
        # emails and archive write: wait for both.
        done = 'to="Skipped"' in text and "temporal_workflow_completed" in text
        return text if done else None

    metrics = wait_for(scrape)
    assert metrics is not None, "no Skipped transition or no SDK workflow metric was served"
    transitions = [
        line
        for line in metrics.splitlines()
        if line.startswith("referral_transitions") and 'to="Skipped"' in line
    ]
    assert transitions
    assert 'cause="action"' in transitions[0]
    assert 'from="New"' in transitions[0]
    assert 'reason="no_capacity"' in transitions[0]
    assert refused_updates(url) == before + 2


def refused_updates(url: str) -> float:
    """The worker's count of `won` updates refused while New (0 before the first)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    labels = ('action="won"', 'status="New"', 'message="update"')
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("referral_actions_refused") and all(x in line for x in labels)
    ]
    return sum(counts)


def test_worker_stops_gracefully_on_sigterm(worker_process: subprocess.Popen[bytes]) -> None:
    assert worker_process.poll() is None
    assert stop(worker_process, grace=30) == 0  # SIGTERM; killed, and failing, after 30 s


def test_worker_refuses_to_start_without_a_valid_directory(
    environment: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "partners.json").write_text('{"partners": [{"id": "x"}]}')
    for directory, expected in (
        (tmp_path / "missing.json", "No such file"),
        (tmp_path / "partners.json", "partners.0.name"),
    ):
        result = subprocess.run(
            WORKER_COMMAND,
            env={**environment, "REFERRALS_PARTNER_DIRECTORY": str(directory)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: partner directory {directory}")
        assert expected in result.stderr


def test_worker_refuses_a_sender_that_would_break_the_from_header(
    environment: dict[str, str],
) -> None:
    for sender, expected in (
        ("Evil\nBcc: x@example.com <r@example.com>", "must be one line"),
        ("Zoë <a@example.com>, Ünal <b@example.com>", "must be one address"),
    ):
        result = subprocess.run(
            WORKER_COMMAND,
            env={**environment, "SENDGRID_FROM": sender},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("error: SENDGRID_FROM: ")
        assert expected in result.stderr
