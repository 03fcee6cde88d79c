"""SQL the archive's statistics need, written once for both databases it runs on.

- `elapsed_ms(start, end)`: whole milliseconds from one timestamp to another (SQLite keeps
  timestamps as text and has `julianday`; PostgreSQL subtracts them).
- `days_late(due, at)`: whole days from a date to the UTC day of a timestamp (negative
  when early).
- `exact_sum(amounts)`: the exact sum of money (PostgreSQL's NUMERIC `sum`; on SQLite,
  where amounts are decimal text and `sum` would go through floats, the `decimal_sum`
  aggregate that `archive.database` registers on every connection).
"""

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from archive.schema import ExactDecimal


class elapsed_ms(FunctionElement[int]):
    type = BigInteger()
    inherit_cache = True


class days_late(FunctionElement[int]):
    type = Integer()
    inherit_cache = True


class exact_sum(FunctionElement[Decimal]):
    type = ExactDecimal()
    inherit_cache = True


@compiles(elapsed_ms, "sqlite")
def _elapsed_ms_sqlite(element: elapsed_ms, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400000) AS INTEGER)"


@compiles(elapsed_ms, "postgresql")
def _elapsed_ms_postgresql(element: elapsed_ms, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND(EXTRACT(EPOCH FROM ({end} - {start})) * 1000) AS BIGINT)"


@compiles(days_late, "sqlite")
def _days_late_sqlite(element: days_late, compiler: SQLCompiler, **kw: Any) -> str:
    due, at = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday(date({at})) - julianday({due}) AS INTEGER)"


@compiles(days_late, "postgresql")
def _days_late_postgresql(element: days_late, compiler: SQLCompiler, **kw: Any) -> str:
    due, at = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST(({at}) AT TIME ZONE 'UTC' AS DATE) - {due})"


@compiles(exact_sum, "sqlite")
def _exact_sum_sqlite(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"decimal_sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "postgresql")
def _exact_sum_postgresql(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


class DecimalSum:
    """SQLite's `decimal_sum` aggregate: decimal text in, the exact sum as text out."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = Decimal(value) + (self.total or 0)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")
