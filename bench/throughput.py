"""`python -m bench lifecycle`: referrals against the bare baseline, on one local dev server.

Phase 1, closed loop at saturation: N lifecycles (submit, interested, accept, won, result)
with a fixed number in flight; throughput is lifecycles per second. Phase 2, open loop:
both systems offered the same arrivals, at 50 % and 80 % of the *referrals'* own saturation
rate (so that neither queues at 50 %), each action's latency from sending its update to the
new state coming back (the update returns the status view).
CPU per lifecycle at saturation, by process (server, worker, the bench's client), shows
where the difference between the two goes.
"""

import os
import statistics
from collections.abc import Awaitable, Callable

from bench.harness import (
    SYSTEMS,
    bench_rig,
    cpu_per_lifecycle,
    cpu_s,
    in_rounds,
    new_run_id,
    progress_bars,
    rss_mb,
)
from bench.loops import (
    Load,
    baseline_driver,
    closed_loop,
    merged,
    open_loop,
    referral_driver,
    round_trips,
)
from bench.results import BySystem, ThroughputResult

THROUGHPUT_QUEUE = "bench-referrals"
OFFERED_SHARES = (0.5, 0.8)  # of the referrals' saturation rate, offered to both systems


async def run_throughput(
    count: int, in_flight: int, in_memory: bool, rounds: int, baseline_visibility: bool = False
) -> ThroughputResult:
    run_id = new_run_id()
    async with bench_rig(THROUGHPUT_QUEUE, in_memory=in_memory) as rig:
        client = rig.client
        drivers = {
            "baseline": baseline_driver(run_id, baseline_visibility),
            "referrals": referral_driver(rig.archive, run_id, THROUGHPUT_QUEUE),
        }
        workers = {"baseline": rig.baseline.pid, "referrals": rig.worker.pid}
        cpu_s_used = {system: {"server": 0.0, "worker": 0.0, "bench": 0.0} for system in SYSTEMS}

        async def saturating(system: str, label: str) -> Load:
            pids = {"server": rig.server.pid, "worker": workers[system], "bench": os.getpid()}
            before = {name: cpu_s(pid) for name, pid in pids.items()}
            load = await closed_loop(client, drivers[system], count, in_flight, label, progress)
            for name, pid in pids.items():
                cpu_s_used[system][name] += cpu_s(pid) - before[name]
            return load

        def offering(rate: float) -> Callable[[str, str], Awaitable[Load]]:
            return lambda system, label: open_loop(
                client, drivers[system], count, rate, label, progress
            )

        with progress_bars() as progress:
            for system in SYSTEMS:
                await closed_loop(client, drivers[system], 10, 5, "warm-up", progress)
            # Phase 1: the closed loop at saturation, with CPU per lifecycle by process.
            saturated = await in_rounds(rounds, saturating)
            loads = [merged(system, None, saturated[system]) for system in SYSTEMS]
            # Read after the timed runs, so that the reading costs them nothing.
            trips = {
                load.system: await round_trips(client, load.workflow_ids, 100) for load in loads
            }
            # Phase 2: open-loop arrivals at shares of the referrals' saturation rate.
            saturation = loads[1].achieved_per_s
            for share in OFFERED_SHARES:
                offered = await in_rounds(rounds, offering(share * saturation))
                rate = round(share * saturation, 2)
                loads += [merged(system, rate, offered[system]) for system in SYSTEMS]
        worker_rss = rss_mb(rig.worker.pid, peak=True)
    round_ratios = [
        r.achieved_per_s / b.achieved_per_s
        for r, b in zip(saturated["referrals"], saturated["baseline"], strict=True)
    ]
    at_half = {load.system: load for load in loads[2:4]}
    at_80 = {load.system: load for load in loads[4:6]}
    lifecycles = count * rounds
    cpu = cpu_per_lifecycle(cpu_s_used, lifecycles)
    return ThroughputResult(
        referrals=count,
        in_flight=in_flight,
        rounds=rounds,
        server="in-memory" if in_memory else "sqlite (wal, synchronous=normal)",
        baseline="with the referral's search attributes, upserts and timer"
        if baseline_visibility
        else "bare",
        referrals_per_s=round(loads[1].achieved_per_s, 2),
        baseline_per_s=round(loads[0].achieved_per_s, 2),
        ratio=round(statistics.median(round_ratios), 3),
        round_ratios=tuple(round(ratio, 3) for ratio in round_ratios),
        action_p50_ms=round(at_half["referrals"].percentile(50), 1),
        action_p99_ms=round(at_half["referrals"].percentile(99), 1),
        baseline_action_p99_ms=round(at_half["baseline"].percentile(99), 1),
        p99_ratio=round(
            at_half["referrals"].percentile(99) / at_half["baseline"].percentile(99), 2
        ),
        action_p99_ms_80=round(at_80["referrals"].percentile(99), 1),
        baseline_action_p99_ms_80=round(at_80["baseline"].percentile(99), 1),
        p99_ratio_80=round(at_80["referrals"].percentile(99) / at_80["baseline"].percentile(99), 2),
        loads=tuple(load.figures() for load in loads),
        worker_peak_rss_mb=round(worker_rss, 1),
        round_trips_per_lifecycle=BySystem(**trips),
        cpu_ms_per_lifecycle=BySystem(**cpu),
        cpu_ratio=round(
            sum(cpu_s_used["baseline"].values()) / sum(cpu_s_used["referrals"].values()), 3
        ),
        median_action_ms_at_saturation=round(
            statistics.median(loads[1].action_latencies_s) * 1000, 1
        ),
    )
