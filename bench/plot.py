"""A PNG of throughput and action p99 against offered load, both systems (matplotlib)."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def plot_loads(result: dict[str, Any], path: Path) -> None:
    saturation = result["baseline_per_s"]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for system, style in (("baseline", "o--"), ("referrals", "s-")):
        loads = [load for load in result["loads"] if load["system"] == system]
        offered = [load["offered_per_s"] or saturation * 1.25 for load in loads]
        order = sorted(range(len(loads)), key=offered.__getitem__)
        xs = [offered[i] for i in order]
        throughput.plot(xs, [loads[i]["achieved_per_s"] for i in order], style, label=system)
        latency.plot(xs, [loads[i]["action_p99_ms"] for i in order], style, label=system)
    throughput.set(
        title="Throughput",
        xlabel="offered lifecycles/s (rightmost: saturation)",
        ylabel="achieved lifecycles/s",
    )
    latency.set(
        title="Action latency p99",
        xlabel="offered lifecycles/s (rightmost: saturation)",
        ylabel="ms",
        yscale="log",
    )
    for axes in (throughput, latency):
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(
        f"{result['referrals']} lifecycles per load in each of {result.get('rounds', 1)} rounds, "
        f"{result['server']} dev server, {result.get('baseline', 'bare')} baseline"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
