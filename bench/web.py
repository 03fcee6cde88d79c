"""`python -m bench web`: an action through the partner API against the same update sent
directly, on one dev server with the referral worker and one `referrals serve` process.

Both paths drive the same lifecycle (interested, accept, won; started directly), each
action timed from sending it to the new view coming back. Phase 1, closed loop at
saturation: actions a second of each path. Phase 2, open loop: both paths offered the same
arrivals at 50 % of the direct path's saturation rate; the p99 the API adds is the
difference of the two p99s. Rounds run the two paths back to back, alternating.
"""

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from archive.partner_keys import PartnerKeyStore
from bench.harness import (
    PARTNER,
    ROOT,
    STARTUP_S,
    bench_rfi,
    bench_rig,
    cpu_s,
    in_rounds,
    new_run_id,
    progress_bars,
)
from bench.loops import Driver, Load, closed_loop, merged, open_loop
from bench.results import WebResult
from starter import referrals
from starter.dev import free_port
from starter.processes import running

WEB_QUEUE = "bench-web"
PATHS = ("direct", "api")
ACTIONS_PER_LIFECYCLE = 3


def steps() -> list[tuple[str, dict[str, Any]]]:
    close = str((datetime.now(UTC) + timedelta(days=90)).date())
    accept = {"estimated_deal_value": "1000", "currency": "EUR", "estimated_close_date": close}
    return [("interested", {}), ("accept", accept), ("won", {})]


def direct_driver(run_id: str) -> Driver:
    async def drive(client: Client, key: str, latencies: list[float]) -> str:
        rfi = bench_rfi(f"web-{run_id}-{key}")
        await referrals.submit(client, rfi, [PARTNER], task_queue=WEB_QUEUE)
        for action, payload in steps():
            began = time.perf_counter()
            await referrals.act(client, rfi.id, PARTNER, action, payload)
            latencies.append(time.perf_counter() - began)
        return rfi.id

    return drive


def api_driver(run_id: str, http: httpx.AsyncClient, api_key: str) -> Driver:
    headers = {"Authorization": f"Bearer {api_key}"}

    async def drive(client: Client, key: str, latencies: list[float]) -> str:
        rfi = bench_rfi(f"web-{run_id}-{key}")
        await referrals.submit(client, rfi, [PARTNER], task_queue=WEB_QUEUE)
        for action, payload in steps():
            began = time.perf_counter()
            answer = await http.post(
                f"/v1/referrals/{rfi.id}/actions/{action}", json=payload, headers=headers
            )
            latencies.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"{action} through the API: {answer.status_code} {answer.text}")
        return rfi.id

    return drive


@asynccontextmanager
async def web_service(env: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    """`referrals serve` as deployed, on a free port; its URL and process id."""
    port = free_port()
    command = [sys.executable, "-c", "from starter.cli import main; main()", "serve"]
    with running([*command, "--port", str(port)], env=env, cwd=ROOT, quiet=True) as process:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as probe:
            deadline = time.monotonic() + STARTUP_S
            while True:
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the web service did not start")
                await asyncio.sleep(0.2)
        yield url, process.pid


async def run_web(count: int, in_flight: int, rounds: int) -> WebResult:
    """``count`` lifecycles (three actions each) per path, load and round."""
    run_id = new_run_id()
    async with bench_rig(WEB_QUEUE) as rig:
        env = {
            **rig.environment,
            # The bench offers far more than one partner would: the limits are not measured.
            "REFERRALS_WEB_REQUESTS_PER_MINUTE": "100000000",
            "REFERRALS_WEB_ACTIONS_PER_MINUTE": "100000000",
        }
        _, api_key = PartnerKeyStore(rig.archive.engine).add(PARTNER, "bench", datetime.now(UTC))
        async with web_service(env) as (url, service_pid):
            limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
                drivers = {
                    "direct": direct_driver(run_id),
                    "api": api_driver(run_id, http, api_key),
                }
                service_cpu = 0.0
                rate = 0.0

                async def saturating(path: str, label: str) -> Load:
                    nonlocal service_cpu
                    before = cpu_s(service_pid)
                    load = await closed_loop(
                        rig.client, drivers[path], count, in_flight, label, progress
                    )
                    if path == "api":
                        service_cpu += cpu_s(service_pid) - before
                    return load

                async def offered(path: str, label: str) -> Load:
                    return await open_loop(rig.client, drivers[path], count, rate, label, progress)

                with progress_bars() as progress:
                    for path in PATHS:
                        await closed_loop(
                            rig.client, drivers[path], 10, 5, f"warm-up-{path}", progress
                        )
                    saturated = await in_rounds(rounds, saturating, PATHS)
                    at_saturation = {p: merged(p, None, saturated[p]) for p in PATHS}
                    rate = at_saturation["direct"].achieved_per_s * 0.5
                    half = await in_rounds(rounds, offered, PATHS)
                    at_half = {p: merged(p, round(rate, 2), half[p]) for p in PATHS}
    ratios = [
        api.achieved_per_s / direct.achieved_per_s
        for api, direct in zip(saturated["api"], saturated["direct"], strict=True)
    ]
    p99 = {path: at_half[path].percentile(99) for path in PATHS}
    return WebResult(
        lifecycles=count,
        in_flight=in_flight,
        rounds=rounds,
        direct_actions_per_s=round(at_saturation["direct"].achieved_per_s * 3, 1),
        api_actions_per_s=round(at_saturation["api"].achieved_per_s * 3, 1),
        ratio=round(statistics.median(ratios), 3),
        round_ratios=tuple(round(r, 3) for r in ratios),
        offered_actions_per_s=round(rate * ACTIONS_PER_LIFECYCLE, 1),
        direct_p99_ms=round(p99["direct"], 1),
        api_p99_ms=round(p99["api"], 1),
        p99_added_ms=round(p99["api"] - p99["direct"], 1),
        direct_p50_ms=round(at_half["direct"].percentile(50), 1),
        api_p50_ms=round(at_half["api"].percentile(50), 1),
        service_cpu_ms_per_action=round(
            service_cpu * 1000 / (count * rounds * ACTIONS_PER_LIFECYCLE), 2
        ),
        cores=os.cpu_count() or 0,
    )
