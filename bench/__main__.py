"""`python -m bench lifecycle|events|sender|web|open|heap|burst|compare ... [--json]`."""

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bench.harness import WorkerExited
from bench.results import Figures, OpenResult
from bench.throughput import run_throughput
from bench.waiting import deadline_burst, memory_per_open_referral

app = typer.Typer(
    help="Benchmarks of the referral service against bare Temporal.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Each benchmark starts its own dev server, workers and baseline."""


Result = TypeVar("Result", bound=Figures)
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def measured(benchmark: Coroutine[Any, Any, Result]) -> Result:
    """The benchmark's result; one line on stderr and exit code 1 if a worker exits."""
    try:
        return asyncio.run(benchmark)
    except WorkerExited as error:
        Console(stderr=True).print(f"error: {error}")
        raise typer.Exit(1) from None


def print_json(result: Figures) -> None:
    print(json.dumps(result.as_json()))


@app.command("lifecycle")
def lifecycle_command(
    referrals: Annotated[int, typer.Option(min=10, help="Lifecycles per phase.")] = 200,
    in_flight: Annotated[int, typer.Option(min=1, help="Closed-loop concurrency.")] = 50,
    in_memory: Annotated[bool, typer.Option(help="An in-memory dev server.")] = False,
    baseline_visibility: Annotated[
        bool,
        typer.Option(help="The baseline also makes the referral's search-attribute upserts."),
    ] = False,
    rounds: Annotated[
        int, typer.Option(min=1, help="Rounds of each load, the two systems back to back.")
    ] = 3,
    as_json: AsJson = False,
    plot: Annotated[Path | None, typer.Option(help="Also draw a PNG here (matplotlib).")] = None,
) -> None:
    """interested -> accept -> won: throughput at saturation, latency at 50 % and 80 % of
    the referrals' saturation rate (each load in rounds that run both systems back to back;
    rates are medians)."""
    result = measured(run_throughput(referrals, in_flight, in_memory, rounds, baseline_visibility))
    if plot is not None:
        from bench.plot import plot_loads

        plot_loads(result, plot)
    if as_json:
        print_json(result)
        return
    table = Table("System", "Offered /s", "Achieved /s", "Action p50 ms", "Action p99 ms")
    for load in result.loads:
        table.add_row(
            load.system,
            str(load.offered_per_s or "saturation"),
            str(load.achieved_per_s),
            str(load.action_p50_ms),
            str(load.action_p99_ms),
        )
    console = Console()
    console.print(table)
    console.print(
        f"referrals/s {result.referrals_per_s}, baseline/s {result.baseline_per_s}, "
        f"ratio {result.ratio} (median of rounds {list(result.round_ratios)}); "
        f"at 50 %: action p50 {result.action_p50_ms} ms, "
        f"p99 {result.action_p99_ms} ms ({result.p99_ratio}x the baseline's "
        f"{result.baseline_action_p99_ms} ms); at 80 %: p99 {result.action_p99_ms_80} ms "
        f"({result.p99_ratio_80}x the baseline's {result.baseline_action_p99_ms_80} ms); "
        f"worker peak RSS "
        f"{result.worker_peak_rss_mb} MB ({result.server}; baseline {result.baseline})"
    )
    for system, cpu in result.cpu_ms_per_lifecycle.items():
        shares = ", ".join(f"{name} {ms}" for name, ms in cpu.as_json().items())
        console.print(f"CPU ms per lifecycle at saturation, {system}: {shares}")
    console.print(f"CPU per lifecycle, baseline / referrals: {result.cpu_ratio}")
    for system, trips in result.round_trips_per_lifecycle.items():
        counts = ", ".join(f"{name} {count}" for name, count in trips.as_json().items())
        console.print(f"Per lifecycle at saturation, {system}: {counts}")


@app.command("web")
def web_command(
    lifecycles: Annotated[int, typer.Option(min=10, help="Lifecycles per path and load.")] = 200,
    in_flight: Annotated[int, typer.Option(min=1, help="Closed-loop concurrency.")] = 50,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds, the two paths back to back.")] = 3,
    as_json: AsJson = False,
) -> None:
    """An action through the partner API (one `referrals serve` process) against the same
    update sent directly: actions a second at saturation, and the p99 the API adds at 50 %
    of the direct path's saturation."""
    from bench.web import run_web

    result = measured(run_web(lifecycles, in_flight, rounds))
    if as_json:
        print_json(result)
        return
    Console().print(
        f"at saturation: direct {result.direct_actions_per_s} actions/s, API "
        f"{result.api_actions_per_s} ({result.ratio}x, rounds {list(result.round_ratios)}); "
        f"at {result.offered_actions_per_s} actions/s offered: p99 direct "
        f"{result.direct_p99_ms} ms, API {result.api_p99_ms} ms (+{result.p99_added_ms} ms), "
        f"p50 {result.direct_p50_ms} / {result.api_p50_ms} ms; the service's CPU "
        f"{result.service_cpu_ms_per_action} ms an action"
    )


@app.command("sender")
def sender_command(
    events: Annotated[int, typer.Option(min=100, help="Sends per round and client.")] = 5000,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds, the two clients back to back.")] = 5,
    as_json: AsJson = False,
) -> None:
    """One webhook send's CPU and wall time: the project's sender against urllib3's pool."""
    from bench.sender import run_sender

    result = run_sender(events, rounds)
    if as_json:
        print_json(result)
        return
    Console().print(
        f"per send, median of {rounds} rounds of {events}: http.client (the sender) "
        f"{result.http_client_cpu_us} us CPU, {result.http_client_wall_us} us wall; urllib3 "
        f"{result.urllib3_cpu_us} us CPU, {result.urllib3_wall_us} us wall"
    )


@app.command("events")
def events_command(
    referrals: Annotated[int, typer.Option(min=10, help="Lifecycles per loop.")] = 200,
    in_flight: Annotated[
        int, typer.Option(min=1, help="Closed-loop concurrency at saturation.")
    ] = 50,
    rounds: Annotated[
        int, typer.Option(min=1, help="Rounds at saturation, no endpoint and one back to back.")
    ] = 5,
    as_json: AsJson = False,
) -> None:
    """Webhook delivery: the lifecycle's throughput with one endpoint against none, then
    the lag from a transition to the receiver at 50 % load with one and three endpoints."""
    from bench.events import run_events

    result = measured(run_events(referrals, in_flight, rounds))
    if as_json:
        print_json(result)
        return
    table = Table(
        "Endpoints",
        "Offered /s",
        "Achieved /s",
        "Received",
        "Missing",
        "Lag p50 ms",
        "Lag p99 ms",
        "Lag max ms",
    )
    for load in result.loads:
        table.add_row(
            str(load.endpoints),
            str(load.offered_per_s or "saturation"),
            str(load.achieved_per_s),
            f"{load.events_received}/{load.events_expected}",
            str(load.missing),
            *(
                str("-" if ms is None else ms)
                for ms in (load.lag_p50_ms, load.lag_p99_ms, load.lag_max_ms)
            ),
        )
    console = Console()
    console.print(table)
    console.print(
        f"lifecycles/s without endpoint {result.without_endpoint_per_s}, with one "
        f"{result.one_endpoint_per_s}, ratio {result.ratio} (median of rounds "
        f"{list(result.round_ratios)}; target >= 0.9)"
    )
    console.print(
        f"lag at 50 % ({result.offered_per_s}/s): one endpoint p50 "
        f"{result.one_endpoint_lag_p50_ms} ms, p99 {result.one_endpoint_lag_p99_ms} ms; three "
        f"endpoints p50 {result.three_endpoints_lag_p50_ms} ms, p99 "
        f"{result.three_endpoints_lag_p99_ms} ms (target p99 < 1000 ms); events missing "
        f"{result.missing}"
    )
    for load in result.loads[1:]:
        by_type = ", ".join(
            f"{type_.removeprefix('referral.')} {lag.p50_ms}/{lag.p99_ms}"
            for type_, lag in load.lag_by_type.items()
        )
        console.print(
            f"Lag p50/p99 ms by event, {load.load} with {load.endpoints} endpoint(s): {by_type}"
        )
    for system, cpu in result.cpu_ms_per_lifecycle.items():
        shares = ", ".join(f"{name} {ms}" for name, ms in cpu.as_json().items())
        console.print(f"CPU ms per lifecycle at saturation, {system}: {shares}")


@app.command("open")
def open_command(
    referrals: Annotated[int, typer.Option(min=10, help="Referrals left open.")] = 500,
    cache: Annotated[
        list[int] | None, typer.Option(help="Sticky cache sizes to run with (repeat the option).")
    ] = None,
    wait: Annotated[float, typer.Option(help="Their respond deadline, in seconds.")] = 120,
    as_json: AsJson = False,
) -> None:
    """Memory per open referral (default and small sticky cache); then all become Missed."""
    result = OpenResult(
        tuple(
            measured(memory_per_open_referral(referrals, size, wait))
            for size in cache or [1000, 50]
        )
    )
    if as_json:
        print_json(result)
        return
    for run in result.runs:
        Console().print(run.as_json())


@app.command()
def heap(
    referrals: Annotated[int, typer.Option(min=10, help="Referrals left open.")] = 1000,
    cache: Annotated[int, typer.Option(min=0, help="Sticky cache size.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Python heap per open referral past the sticky cache (tracemalloc, worker in-process)."""
    from bench.heap import heap_per_open_referral

    result = measured(heap_per_open_referral(referrals, cache))
    print(json.dumps(result.as_json()) if as_json else result.as_json())


@app.command()
def burst(
    referrals: Annotated[int, typer.Option(min=10, help="Deadlines due in one second.")] = 1000,
    window: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for both bursts to drain.")
    ] = 3600,
    as_json: AsJson = False,
) -> None:
    """N respond deadlines falling due in the same second, against N bare timers."""
    result = measured(deadline_burst(referrals, window))
    print(json.dumps(result.as_json()) if as_json else result.as_json())


@app.command("compare")
def compare_command(
    variants: Annotated[
        list[str],
        typer.Argument(
            help="Worker environments, each KEY=VALUE[,KEY=VALUE...]; '' for the defaults."
        ),
    ],
    referrals: Annotated[int, typer.Option(min=10, help="Lifecycles per loop.")] = 150,
    in_flight: Annotated[int, typer.Option(min=1, help="Closed-loop concurrency.")] = 50,
    rounds: Annotated[int, typer.Option(min=1, help="Loops of each variant.")] = 5,
    as_json: AsJson = False,
) -> None:
    """Worker settings against each other on one dev server: closed loops in rounds, the
    order rotating; CPU per lifecycle of the server and the worker, workflow tasks, rate."""
    from bench.compare import Variant, compare

    try:
        parsed = [Variant.parse(text) for text in variants]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="VARIANTS") from None
    labels = [variant.label for variant in parsed]
    if len(labels) < 2 or len(set(labels)) < len(labels):
        raise typer.BadParameter("give two variants or more, each once", param_hint="VARIANTS")
    result = measured(compare(parsed, referrals, in_flight, rounds))
    if as_json:
        print_json(result)
        return
    table = Table(
        "Variant", "Server ms", "Worker ms", "Workflow tasks", "Activities", "Lifecycles/s"
    )
    for variant in result.variants:
        median = variant.median
        table.add_row(
            variant.variant,
            str(median.server_ms),
            str(median.worker_ms),
            str(median.workflow_tasks),
            str(median.activities),
            str(median.per_s),
        )
    console = Console()
    console.print(table)
    console.print(
        f"Medians of {rounds} rounds of {referrals} lifecycles ({in_flight} in flight); "
        "CPU and workflow tasks per lifecycle."
    )


if __name__ == "__main__":
    app()
