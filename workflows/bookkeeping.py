"""What a run of the referral workflow keeps beside the referral itself.

The first four fields cross continue-as-new (in ``Continuation``); the rest count or
steer this run only. Pure: the workflow reads and changes it, nothing here runs anything.
"""

from dataclasses import dataclass, field

from workflows.models import Continuation, PendingEmail, QueuedAction, ReferralState


@dataclass
class Bookkeeping:
    queued: list[QueuedAction] = field(default_factory=list)  # signals taken before the start
    pending: dict[str, PendingEmail] = field(default_factory=dict)  # emails not yet settled
    archived: int = -1  # transitions in the archive; -1 before the first write
    counted: int = 0  # transitions counted in the metrics
    continued: bool = False  # this run took over from an earlier one
    changes: int = 0  # state changes: each wakes the run loop
    messages: int = 0  # signals and updates this run has handled
    sending: bool = False  # emails go out once the run has started its senders
    draining: bool = False  # continuing as new: start no activity, carry what is left
    coalescing: bool = False  # archive writes may wait for a burst (asked at each action)

    @classmethod
    def taken_over(cls, continued: Continuation | None) -> "Bookkeeping":
        """A new run's books, or those an earlier run handed over."""
        if continued is None:
            return cls()
        return cls(
            queued=list(continued.queued_actions),
            pending={p.request.id: p for p in continued.pending_emails},
            archived=continued.archived,
            counted=continued.counted,
            continued=True,
        )

    def handed_over(self, state: ReferralState) -> Continuation:
        """What the next run needs to go on where this one stops."""
        return Continuation(
            state=state,
            pending_emails=list(self.pending.values()),
            queued_actions=self.queued,
            archived=self.archived,
            counted=self.counted,
        )
