"""The benchmarks still run and report every figure (tiny sizes: not a timed test)."""

import json
import math
import os
import statistics
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare import BaselineInput, noop
from bench.baseline import BaselineWorkflow
from bench.compare import Variant
from bench.harness import rotated, schedule
from bench.loops import Load, merged
from bench.results import LoadFigures
from tests.factories import ROOT
from workflows import RESPOND_BY_KEY, STATUS_KEY


def bench(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def shape(value: Any) -> Any:
    """What other tools rely on in a `--json` object: its keys in order, what each holds
    (an object's keys, a list's items), and None for a number, a string or a list of them."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return [shape(item) for item in value]
    return None


def same_shape(result: dict[str, Any], expected: dict[str, Any]) -> bool:
    return json.dumps(shape(result)) == json.dumps(expected)


LOAD = dict.fromkeys(
    ["system", "offered_per_s", "achieved_per_s", "action_p50_ms", "action_p99_ms"]
)
TRIPS = dict.fromkeys(
    [
        "activities",
        "local_activities",
        "updates",
        "upserts",
        "timers",
        "workflow_tasks",
        "history_events",
        "history_kb",
    ]
)
CPU = dict.fromkeys(["server", "worker", "bench"])
LIFECYCLE = {
    **dict.fromkeys(
        [
            "referrals",
            "in_flight",
            "rounds",
            "server",
            "baseline",
            "referrals_per_s",
            "baseline_per_s",
            "ratio",
            "round_ratios",
            "action_p50_ms",
            "action_p99_ms",
            "baseline_action_p99_ms",
            "p99_ratio",
            "action_p99_ms_80",
            "baseline_action_p99_ms_80",
            "p99_ratio_80",
        ]
    ),
    "loads": [LOAD] * 6,  # saturation, 50 % and 80 % of the referrals', each for both systems
    "worker_peak_rss_mb": None,
    "round_trips_per_lifecycle": {"baseline": TRIPS, "referrals": TRIPS},
    "cpu_ms_per_lifecycle": {"baseline": CPU, "referrals": CPU},
    "cpu_ratio": None,
    "median_action_ms_at_saturation": None,
}
OPEN_RUN = dict.fromkeys(
    [
        "open_referrals",
        "max_cached_workflows",
        "worker_rss_mb",
        "baseline_worker_rss_mb",
        "server_rss_mb",
        "rss_per_open_referral_kb",
        "baseline_rss_per_open_kb",
        "server_rss_per_open_kb",
        "second_half_rss_per_open_kb",
        "baseline_second_half_rss_per_open_kb",
        "missed",
    ]
)
BURST = dict.fromkeys(
    [
        "deadlines",
        "burst_s",
        "baseline_burst_s",
        "burst_per_s",
        "baseline_burst_per_s",
        "drained",
        "lost",
    ]
)
HEAP = dict.fromkeys(
    [
        "open_referrals",
        "max_cached_workflows",
        "heap_per_open_referral_kb",
        "heap_per_open_referral_past_cache_kb",
    ]
)
LOOP = dict.fromkeys(["server_ms", "worker_ms", "workflow_tasks", "activities", "per_s"])


def test_lifecycle_reports_both_systems_at_every_load(tmp_path: Path) -> None:
    plot = tmp_path / "loads.png"
    result = bench(
        *("lifecycle", "--referrals", "10", "--in-flight", "5", "--rounds", "3"),
        *("--plot", str(plot)),
    )
    assert same_shape(result, LIFECYCLE), shape(result)
    assert (result["referrals"], result["in_flight"], result["rounds"]) == (10, 5, 3)
    assert (result["server"], result["baseline"]) == ("sqlite (wal, synchronous=normal)", "bare")
    assert result["referrals_per_s"] > 0
    assert result["baseline_per_s"] > 0
    # The ratio is the median of the rounds' (each of unrounded rates run back to back).
    assert len(result["round_ratios"]) == 3
    assert result["ratio"] == pytest.approx(sorted(result["round_ratios"])[1], abs=0.001)
    assert 0 < result["action_p50_ms"] <= result["action_p99_ms"]
    assert result["baseline_action_p99_ms"] > 0
    assert result["p99_ratio"] == pytest.approx(
        result["action_p99_ms"] / result["baseline_action_p99_ms"], rel=0.01
    )
    assert result["p99_ratio_80"] == pytest.approx(
        result["action_p99_ms_80"] / result["baseline_action_p99_ms_80"], rel=0.01
    )
    systems = [load["system"] for load in result["loads"]]
    assert systems == ["baseline", "referrals"] * 3
    for load in result["loads"]:
        assert load["achieved_per_s"] > 0
        assert 0 < load["action_p50_ms"] <= load["action_p99_ms"]
    offered = [load["offered_per_s"] for load in result["loads"]]
    # Both systems are offered shares of the referrals' own saturation rate.
    half, most = (share * result["referrals_per_s"] for share in (0.5, 0.8))
    assert offered[:2] == [None, None]  # the closed loop, at saturation
    assert offered[2:] == pytest.approx([half, half, most, most], abs=0.02)
    saturated = [load["achieved_per_s"] for load in result["loads"][:2]]
    assert saturated == [result["baseline_per_s"], result["referrals_per_s"]]
    assert result["median_action_ms_at_saturation"] > 0
    assert result["worker_peak_rss_mb"] > 0
    cpu = result["cpu_ms_per_lifecycle"]
    assert all(ms > 0 for system in cpu.values() for ms in system.values())
    totals = {system: sum(cpu[system].values()) for system in cpu}
    assert result["cpu_ratio"] == pytest.approx(totals["baseline"] / totals["referrals"], abs=0.01)
    # Read from the histories: the same start, look-up, updates and (at least) activities.
    trips = result["round_trips_per_lifecycle"]
    bare, referral = trips["baseline"], trips["referrals"]
    assert (bare["activities"], bare["local_activities"], bare["updates"]) == (4, 1, 3)
    assert (bare["upserts"], bare["timers"]) == (0, 0)
    assert bare["workflow_tasks"] >= 4
    # Upserts: ReferralStatus at interested, accept and won, and TemporalChangeVersion, which
    # the SDK sets with the archive-coalescing patch (until the patch is deprecated).
    assert (referral["local_activities"], referral["updates"], referral["upserts"]) == (1, 3, 4)
    assert referral["activities"] >= 4  # a burst's archive writes coalesce: 4 or a few more
    assert referral["history_events"] > bare["history_events"] > 0
    assert referral["history_kb"] > bare["history_kb"] > 0
    # --plot draws the same result.
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_web_compares_the_api_with_the_direct_update() -> None:
    result = bench("web", "--lifecycles", "10", "--in-flight", "5", "--rounds", "2")
    assert (result["lifecycles"], result["in_flight"], result["rounds"]) == (10, 5, 2)
    assert result["direct_actions_per_s"] > 0
    assert result["api_actions_per_s"] > 0
    assert len(result["round_ratios"]) == 2
    assert result["ratio"] == pytest.approx(statistics.median(result["round_ratios"]), abs=0.002)
    assert 0 < result["direct_p50_ms"] <= result["direct_p99_ms"]
    assert 0 < result["api_p50_ms"] <= result["api_p99_ms"]
    assert result["p99_added_ms"] == pytest.approx(
        result["api_p99_ms"] - result["direct_p99_ms"], abs=0.15
    )
    assert result["offered_actions_per_s"] == pytest.approx(
        result["direct_actions_per_s"] / 2, rel=0.05
    )
    assert result["service_cpu_ms_per_action"] > 0


def test_sender_times_both_clients() -> None:
    result = bench("sender", "--events", "100", "--rounds", "1")
    assert (result["events"], result["rounds"]) == (100, 1)
    for client in ("http_client", "urllib3"):
        assert result[f"{client}_cpu_us"] > 0
        assert result[f"{client}_wall_us"] > 0


def test_open_referrals_all_become_missed() -> None:
    result = bench("open", "--referrals", "20", "--wait", "10", "--cache", "5")
    assert same_shape(result, {**OPEN_RUN, "runs": [OPEN_RUN]}), shape(result)
    assert result["missed"] == 20
    assert (result["open_referrals"], result["max_cached_workflows"]) == (20, 5)
    # One run a cache size; the first run's figures stand at the top.
    assert result["runs"] == [{key: value for key, value in result.items() if key != "runs"}]
    for process in ("worker_rss_mb", "baseline_worker_rss_mb", "server_rss_mb"):
        assert result[process] > 0
    for per_open in (
        "rss_per_open_referral_kb",
        "baseline_rss_per_open_kb",
        "server_rss_per_open_kb",
        "second_half_rss_per_open_kb",
        "baseline_second_half_rss_per_open_kb",
    ):
        assert math.isfinite(result[per_open])


def test_a_burst_of_deadlines_loses_none() -> None:
    result = bench("burst", "--referrals", "20")
    assert same_shape(result, BURST), shape(result)
    assert result["deadlines"] == 20
    assert result["drained"] is True
    assert result["lost"] == 0
    assert result["burst_per_s"] > 0
    assert result["baseline_burst_per_s"] > 0
    assert result["burst_s"] >= 0
    assert result["baseline_burst_s"] >= 0


def test_a_worker_that_cannot_start_stops_the_bench_with_one_error() -> None:
    """Instead of referrals that would wait for it forever."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "burst", "--referrals", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SENDGRID_FROM": "two\nlines"},  # the referral worker refuses it
    )
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "error: the worker of task queue 'bench-waiting' exited with code 1" in message


def test_heap_reports_the_cost_past_the_cache() -> None:
    result = bench("heap", "--referrals", "20", "--cache", "5")
    assert same_shape(result, HEAP), shape(result)
    assert (result["open_referrals"], result["max_cached_workflows"]) == (20, 5)
    assert math.isfinite(result["heap_per_open_referral_kb"])
    assert math.isfinite(result["heap_per_open_referral_past_cache_kb"])


def test_rounds_alternate_the_system_that_goes_first() -> None:
    assert list(schedule(2)) == [
        ("baseline", "baseline-1of2"),
        ("referrals", "referrals-1of2"),
        ("referrals", "referrals-2of2"),
        ("baseline", "baseline-2of2"),
    ]


def test_a_load_reports_its_percentiles_and_its_rounds_merge_by_median() -> None:
    latencies = [index / 1000 for index in range(1, 101)]  # 1 ms to 100 ms
    load = Load("referrals", None, 7.5, latencies, ["w"])
    assert load.figures() == LoadFigures("referrals", None, 7.5, 51.0, 100.0)
    rounds = [Load("referrals", 4.0, rate, [rate], [str(rate)]) for rate in (3.0, 1.0, 2.0)]
    merged_load = merged("referrals", 4.0, rounds)
    assert merged_load.achieved_per_s == 2.0
    assert merged_load.action_latencies_s == [3.0, 1.0, 2.0]
    assert merged_load.workflow_ids == ["3.0", "1.0", "2.0"]


async def test_the_baseline_with_visibility_makes_the_referrals_temporal_commands(
    dev_env: WorkflowEnvironment,
) -> None:
    """`--baseline-visibility`: as a referral driven interested -> accept -> won, three
    upserts and the decide timer started and cancelled; the bare baseline makes none."""
    client, queue = dev_env.client, f"baseline-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[BaselineWorkflow], activities=[noop]):
        for visibility in (True, False):
            handle = await client.start_workflow(
                BaselineWorkflow.run,
                BaselineInput(f"r-{uuid.uuid4()}", visibility),
                id=f"baseline-{uuid.uuid4()}",
                task_queue=queue,
                execution_timeout=timedelta(minutes=1),
            )
            for update in (BaselineWorkflow.interested, BaselineWorkflow.accept):
                await handle.execute_update(update)
                respond_by = (await handle.describe()).typed_search_attributes.get(RESPOND_BY_KEY)
                # As a referral's: the decide deadline while Evaluating, unset once Negotiating.
                evaluating = visibility and update is BaselineWorkflow.interested
                assert (respond_by is not None) == evaluating
            await handle.execute_update(BaselineWorkflow.won)
            assert await handle.result() == 3
            events = [event.event_type for event in (await handle.fetch_history()).events]
            upserts = events.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
            attributes = (await handle.describe()).typed_search_attributes
            if visibility:
                assert upserts == 3
                assert events.count(EventType.EVENT_TYPE_TIMER_STARTED) == 1
                assert events.count(EventType.EVENT_TYPE_TIMER_CANCELED) == 1
                assert attributes.get(STATUS_KEY) == "Won"
            else:
                assert upserts == 0
                assert EventType.EVENT_TYPE_TIMER_STARTED not in events
                assert attributes.get(STATUS_KEY) is None


def test_compare_runs_every_variant_in_every_round() -> None:
    result = bench(
        "compare",
        "REFERRALS_MAX_CONCURRENT_ACTIVITIES=2",
        "",
        *("--referrals", "10", "--in-flight", "5", "--rounds", "2"),
    )
    variants = result["variants"]
    assert same_shape(
        result,
        {
            **dict.fromkeys(["referrals", "in_flight", "rounds"]),
            "variants": [
                {"variant": None, "env": env, **LOOP, "by_round": [LOOP] * 2}
                for env in ({"REFERRALS_MAX_CONCURRENT_ACTIVITIES": None}, {})
            ],
        },
    ), shape(result)
    assert (result["referrals"], result["in_flight"], result["rounds"]) == (10, 5, 2)
    assert [v["variant"] for v in variants] == ["REFERRALS_MAX_CONCURRENT_ACTIVITIES=2", "defaults"]
    assert [v["env"] for v in variants] == [{"REFERRALS_MAX_CONCURRENT_ACTIVITIES": "2"}, {}]
    for variant in variants:
        assert len(variant["by_round"]) == 2
        for loop in variant["by_round"]:
            assert min(loop[key] for key in ("server_ms", "worker_ms", "per_s")) > 0
        # The variant's figures are the medians of its rounds'.
        for key in LOOP:
            rounds = [loop[key] for loop in variant["by_round"]]
            assert variant[key] == pytest.approx(statistics.median(rounds), abs=0.01)
        # A referral driven to Won: the lead and details emails, two archive writes or more.
        assert variant["activities"] >= 4
        assert variant["workflow_tasks"] >= 3


def test_compare_variants_parse_or_say_what_is_wrong() -> None:
    assert Variant.parse("A=1, B=x=y") == Variant("A=1, B=x=y", {"A": "1", "B": "x=y"})
    assert Variant.parse(" ") == Variant("defaults", {})
    with pytest.raises(ValueError, match="'A' is not KEY=VALUE"):
        Variant.parse("A")
    variants = [Variant.parse(f"N={n}") for n in range(3)]
    orders = [[v.env["N"] for v in rotated(variants, r)] for r in range(3)]
    assert orders == [["0", "1", "2"], ["1", "2", "0"], ["2", "0", "1"]]  # each first once
    for args, error in (
        (["A=1", "oops"], "'oops' is not KEY=VALUE"),
        (["A=1"], "give two variants or more, each once"),
        (["A=1", "A=1"], "give two variants or more, each once"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bench", "compare", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert error in " ".join(done.stderr.replace("│", " ").split())


def test_compare_stops_with_one_error_when_a_variant_cannot_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "compare", "REFERRALS_MAX_CONCURRENT_ACTIVITIES=0", ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "error: the worker of variant 'REFERRALS_MAX_CONCURRENT_ACTIVITIES=0' exited" in message


LAG = dict.fromkeys(["p50_ms", "p99_ms"])
DELIVERY_LOAD = dict.fromkeys(
    [
        "load",
        "endpoints",
        "offered_per_s",
        "achieved_per_s",
        "events_expected",
        "events_received",
        "missing",
        "duplicates",
        "lag_p50_ms",
        "lag_p99_ms",
        "lag_max_ms",
    ]
)
LIFECYCLE_EVENTS = [
    "referral.created",
    "referral.evaluating",
    "referral.negotiating",
    "referral.won",
]


def test_events_reports_throughput_with_and_without_an_endpoint_and_every_events_lag() -> None:
    result = bench("events", *("--referrals", "10", "--in-flight", "5", "--rounds", "2"))
    sent = {**DELIVERY_LOAD, "lag_by_type": dict.fromkeys(LIFECYCLE_EVENTS, LAG)}
    assert same_shape(
        result,
        {
            **dict.fromkeys(
                [
                    "referrals",
                    "in_flight",
                    "rounds",
                    "server",
                    "without_endpoint_per_s",
                    "one_endpoint_per_s",
                    "ratio",
                    "round_ratios",
                    "offered_per_s",
                    "one_endpoint_lag_p50_ms",
                    "one_endpoint_lag_p99_ms",
                    "three_endpoints_lag_p50_ms",
                    "three_endpoints_lag_p99_ms",
                    "missing",
                ]
            ),
            # Saturation without endpoint and with one, then 50 % with one and with three.
            "loads": [{**DELIVERY_LOAD, "lag_by_type": {}}, sent, sent, sent],
            "cpu_ms_per_lifecycle": {"without_endpoint": CPU, "one_endpoint": CPU},
        },
    ), shape(result)
    assert (result["referrals"], result["in_flight"], result["rounds"]) == (10, 5, 2)
    assert result["without_endpoint_per_s"] > 0
    assert result["one_endpoint_per_s"] > 0
    assert len(result["round_ratios"]) == 2
    assert result["ratio"] == pytest.approx(statistics.median(result["round_ratios"]), abs=0.001)
    assert result["offered_per_s"] == pytest.approx(
        0.5 * result["without_endpoint_per_s"], abs=0.01
    )
    loads = result["loads"]
    assert [(load["load"], load["endpoints"]) for load in loads] == [
        ("saturation", 0),
        ("saturation", 1),
        ("50%", 1),
        ("50%", 3),
    ]
    assert [load["offered_per_s"] for load in loads[:2]] == [None, None]
    assert [load["offered_per_s"] for load in loads[2:]] == [result["offered_per_s"]] * 2
    # Four events a lifecycle, every one at every endpoint, once.
    assert [load["events_expected"] for load in loads] == [0, 4 * 10 * 2, 4 * 10, 4 * 10 * 3]
    for load in loads:
        assert load["events_received"] == load["events_expected"]
        assert (load["missing"], load["duplicates"]) == (0, 0)
        assert load["achieved_per_s"] > 0
    assert result["missing"] == 0
    assert loads[0]["lag_p50_ms"] is None
    for load in loads[1:]:
        assert 0 < load["lag_p50_ms"] <= load["lag_p99_ms"] <= load["lag_max_ms"]
        assert all(0 < lag["p50_ms"] <= lag["p99_ms"] for lag in load["lag_by_type"].values())
    assert (result["one_endpoint_lag_p50_ms"], result["one_endpoint_lag_p99_ms"]) == (
        loads[2]["lag_p50_ms"],
        loads[2]["lag_p99_ms"],
    )
    assert (result["three_endpoints_lag_p50_ms"], result["three_endpoints_lag_p99_ms"]) == (
        loads[3]["lag_p50_ms"],
        loads[3]["lag_p99_ms"],
    )
    cpu = result["cpu_ms_per_lifecycle"]
    assert all(ms > 0 for system in cpu.values() for ms in system.values())
