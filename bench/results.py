"""What `python -m bench ... --json` prints, typed: one frozen dataclass a JSON object,
one field a key, in their order. Other tools read these objects: a field renamed here is a
key renamed for them. The tables of `bench/__main__.py` and `bench/plot.py` read the same
fields."""

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, Figures):
        return value.as_json()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Figures:
    """A result, or a part of one: `as_json()` is its JSON object (a part may flatten
    itself into its parent's keys)."""

    def as_json(self) -> dict[str, Any]:
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


@dataclass(frozen=True)
class SenderResult(Figures):
    """`bench sender`: microseconds per webhook send, medians of the rounds."""

    events: int
    rounds: int
    http_client_cpu_us: float
    urllib3_cpu_us: float
    http_client_wall_us: float
    urllib3_wall_us: float


@dataclass(frozen=True)
class BySystem(Figures, Generic[T]):
    """One figure of each system: `{"baseline": ..., "referrals": ...}`."""

    baseline: T
    referrals: T

    def items(self) -> list[tuple[str, T]]:
        return [("baseline", self.baseline), ("referrals", self.referrals)]


# `bench lifecycle`


@dataclass(frozen=True)
class LoadFigures(Figures):
    system: str
    offered_per_s: float | None  # None: closed loop at saturation
    achieved_per_s: float
    action_p50_ms: float
    action_p99_ms: float


@dataclass(frozen=True)
class RoundTrips(Figures):
    """What Temporal did for a lifecycle, on average, counted in its history."""

    activities: float
    local_activities: float
    updates: float
    upserts: float
    timers: float
    workflow_tasks: float
    history_events: float
    history_kb: float


@dataclass(frozen=True)
class CpuShares(Figures):
    """CPU milliseconds per lifecycle, by process."""

    server: float
    worker: float
    bench: float  # the bench's own client


@dataclass(frozen=True)
class ThroughputResult(Figures):
    referrals: int  # lifecycles per load and round
    in_flight: int
    rounds: int
    server: str
    baseline: str
    referrals_per_s: float
    baseline_per_s: float
    # The median of the rounds' ratios: each round runs both systems back to back.
    ratio: float
    round_ratios: tuple[float, ...]
    # Both systems offered 50 % of the referrals' saturation rate, then 80 %.
    action_p50_ms: float
    action_p99_ms: float
    baseline_action_p99_ms: float
    p99_ratio: float
    action_p99_ms_80: float
    baseline_action_p99_ms_80: float
    p99_ratio_80: float
    loads: tuple[LoadFigures, ...]
    worker_peak_rss_mb: float
    # Per lifecycle at saturation, from the histories: the same start, updates and
    # activities for both, or the ratio compares different work.
    round_trips_per_lifecycle: BySystem[RoundTrips]
    cpu_ms_per_lifecycle: BySystem[CpuShares]
    # On cores the processes share, throughput follows CPU per lifecycle: this ratio
    # drifts less with the machine's speed than the rates do.
    cpu_ratio: float
    median_action_ms_at_saturation: float


# `bench web`


@dataclass(frozen=True)
class WebResult(Figures):
    lifecycles: int  # per path, load and round: a direct start, then three actions
    in_flight: int
    rounds: int
    # At saturation (closed loop): actions a second through each path, and the ratio of
    # the API's to the direct path's (the median of the rounds', run back to back).
    direct_actions_per_s: float
    api_actions_per_s: float
    ratio: float
    round_ratios: tuple[float, ...]
    # Both paths offered 50 % of the direct path's saturation rate.
    offered_actions_per_s: float
    direct_p99_ms: float
    api_p99_ms: float
    p99_added_ms: float
    direct_p50_ms: float
    api_p50_ms: float
    service_cpu_ms_per_action: float  # the one `referrals serve` process, at saturation
    cores: int


# `bench compare`


@dataclass(frozen=True)
class LoopFigures(Figures):
    """One closed loop of a variant, per lifecycle: CPU ms of the server and the worker,
    workflow tasks and activities; and its rate."""

    server_ms: float
    worker_ms: float
    workflow_tasks: float
    activities: float
    per_s: float

    @classmethod
    def median(cls, by_round: list["LoopFigures"]) -> "LoopFigures":
        return cls(
            **{
                name: round(statistics.median(getattr(loop, name) for loop in by_round), 2)
                for name in (field.name for field in dataclasses.fields(cls))
            }
        )


@dataclass(frozen=True)
class VariantResult(Figures):
    variant: str
    env: dict[str, str]
    median: LoopFigures  # over the rounds
    by_round: tuple[LoopFigures, ...]

    def as_json(self) -> dict[str, Any]:
        """The medians stand beside the variant's label, as the rounds' keys."""
        return {
            "variant": self.variant,
            "env": self.env,
            **self.median.as_json(),
            "by_round": [loop.as_json() for loop in self.by_round],
        }


@dataclass(frozen=True)
class CompareResult(Figures):
    referrals: int  # lifecycles per loop
    in_flight: int
    rounds: int
    variants: tuple[VariantResult, ...]


# `bench open`


@dataclass(frozen=True)
class OpenRun(Figures):
    """Memory with N referrals open (and N bare workflows beside them), one cache size."""

    open_referrals: int
    max_cached_workflows: int
    worker_rss_mb: float
    baseline_worker_rss_mb: float
    server_rss_mb: float
    rss_per_open_referral_kb: float
    baseline_rss_per_open_kb: float
    server_rss_per_open_kb: float
    second_half_rss_per_open_kb: float
    baseline_second_half_rss_per_open_kb: float
    missed: int  # of the N, once their deadline passed


@dataclass(frozen=True)
class OpenResult(Figures):
    runs: tuple[OpenRun, ...]  # one a cache size

    def as_json(self) -> dict[str, Any]:
        """The first run's figures, and every run's under "runs"."""
        return {**self.runs[0].as_json(), "runs": [run.as_json() for run in self.runs]}


# `bench burst`


@dataclass(frozen=True)
class BurstResult(Figures):
    deadlines: int
    burst_s: float  # NaN: not drained within the window
    baseline_burst_s: float
    burst_per_s: float | None  # None: not drained within the window
    baseline_burst_per_s: float | None
    # Both drained within the window; if not, `lost` counts the late ones as well.
    drained: bool
    lost: int


# `bench heap`


@dataclass(frozen=True)
class HeapResult(Figures):
    open_referrals: int
    max_cached_workflows: int
    heap_per_open_referral_kb: float
    heap_per_open_referral_past_cache_kb: float


# `bench events`


@dataclass(frozen=True)
class ByEndpoints(Figures, Generic[T]):
    """One figure of the lifecycle without a webhook endpoint and with one."""

    without_endpoint: T
    one_endpoint: T

    def items(self) -> list[tuple[str, T]]:
        return [("without_endpoint", self.without_endpoint), ("one_endpoint", self.one_endpoint)]


@dataclass(frozen=True)
class Lag(Figures):
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class DeliveryLoad(Figures):
    """One load of lifecycles with its endpoints: their rate, and each event's lag from its
    transition's effective time to the receiver having it, at every endpoint."""

    load: str  # "saturation" (closed loop, the rounds merged) or "50 %" (open loop)
    endpoints: int
    offered_per_s: float | None  # None: closed loop at saturation
    achieved_per_s: float
    events_expected: int  # every event of every lifecycle, once at each endpoint
    events_received: int  # of those, each counted once
    missing: int  # not received within the drain time after the load ended
    duplicates: int  # received more than once
    lag_p50_ms: float | None  # None: no endpoint, nothing sent
    lag_p99_ms: float | None
    lag_max_ms: float | None
    # By event type, in the lifecycle's order: referral.created counts from the RFI's
    # receipt (stamped as it is submitted), the others from their transition.
    lag_by_type: dict[str, Lag]


@dataclass(frozen=True)
class EventsResult(Figures):
    referrals: int  # lifecycles per loop
    in_flight: int
    rounds: int
    server: str
    # Closed loops at saturation, in rounds alternating no endpoint and one: median rates.
    without_endpoint_per_s: float
    one_endpoint_per_s: float
    # The median of the rounds' ratios, one endpoint / none (target >= 0.9).
    ratio: float
    round_ratios: tuple[float, ...]
    # Open loops at 50 % of the saturation rate without endpoint: the lag (target p99 < 1 s).
    offered_per_s: float
    one_endpoint_lag_p50_ms: float
    one_endpoint_lag_p99_ms: float
    three_endpoints_lag_p50_ms: float
    three_endpoints_lag_p99_ms: float
    missing: int  # over every load with endpoints
    loads: tuple[DeliveryLoad, ...]
    cpu_ms_per_lifecycle: ByEndpoints[CpuShares]  # at saturation
