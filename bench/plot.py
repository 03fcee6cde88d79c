"""A PNG of throughput and action p99 against offered load, both systems (matplotlib)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.results import LoadFigures, ThroughputResult


def plot_loads(result: ThroughputResult, path: Path) -> None:
    def offered(load: LoadFigures) -> float:
        # Saturation is drawn rightmost, past the faster system's rate.
        return load.offered_per_s or max(result.baseline_per_s, result.referrals_per_s) * 1.25

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for system, style in (("baseline", "o--"), ("referrals", "s-")):
        loads = sorted((load for load in result.loads if load.system == system), key=offered)
        xs = [offered(load) for load in loads]
        throughput.plot(xs, [load.achieved_per_s for load in loads], style, label=system)
        latency.plot(xs, [load.action_p99_ms for load in loads], style, label=system)
    for axes, title, ylabel in (
        (throughput, "Throughput", "achieved lifecycles/s"),
        (latency, "Action latency p99", "ms"),
    ):
        axes.set(title=title, xlabel="offered lifecycles/s (rightmost: saturation)", ylabel=ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend()
    latency.set_yscale("log")
    figure.suptitle(
        f"{result.referrals} lifecycles per load in each of {result.rounds} rounds, "
        f"{result.server} dev server, {result.baseline} baseline"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
