"""The first answer to an API request sent with an `Idempotency-Key`, kept 24 hours.

`begin` claims the key for a request (by its API key, its idempotency key and a hash of
what it asks); the same request again gets the stored answer, another request under the
same key is told so, and one that arrives while the first is still being answered is told
to retry. `finish` stores the answer; `abandon` frees the key when no answer was given (the
action did not happen, so a retry may try again).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from archive.schema import IdempotentRequestRow

KEPT_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class Claimed:
    """The key is this request's: act, then `finish` or `abandon`."""


@dataclass(frozen=True)
class Answered:
    status: int
    body: str


@dataclass(frozen=True)
class InProgress:
    """The first request under this key has not been answered yet."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used for a request asking something else."""


Claim = Claimed | Answered | InProgress | Mismatch


class IdempotencyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, key_id: str, idempotency_key: str, request_hash: str, now: datetime) -> Claim:
        with Session(self.engine) as session, session.begin():
            row = session.get(IdempotentRequestRow, (key_id, idempotency_key))
            if row is not None and now - row.created_at >= KEPT_FOR:
                session.delete(row)  # past its 24 hours: as if it had never been used
                session.flush()
                row = None
            if row is not None:
                if row.request_hash != request_hash:
                    return Mismatch()
                if row.status is None or row.body is None:
                    return InProgress()
                return Answered(row.status, row.body)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(
                    IdempotentRequestRow(
                        key_id=key_id,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        created_at=now,
                    )
                )
        except IntegrityError:  # the same key, claimed by a request running beside this one
            return InProgress()
        return Claimed()

    def finish(self, key_id: str, idempotency_key: str, status: int, body: str) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(IdempotentRequestRow, (key_id, idempotency_key))
            if row is not None:
                row.status, row.body = status, body

    def abandon(self, key_id: str, idempotency_key: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                delete(IdempotentRequestRow).where(
                    IdempotentRequestRow.key_id == key_id,
                    IdempotentRequestRow.idempotency_key == idempotency_key,
                )
            )

    def purge(self, now: datetime) -> int:
        """Forget answers older than 24 hours; how many."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                delete(IdempotentRequestRow).where(IdempotentRequestRow.created_at < now - KEPT_FOR)
            )
        return int(getattr(result, "rowcount", 0) or 0)
