"""Alembic migrations on SQLite and PostgreSQL: from empty, from each previous revision."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from archive.database import alembic_config, create_archive_engine, downgrade, upgrade
from archive.schema import Base


def test_upgrade_from_an_empty_database_matches_the_models(database_url: str) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    assert {"referrals", "referral_transitions"} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    upgrade(engine)  # applying it again is a no-op
    engine.dispose()


def test_every_revision_upgrades_from_the_one_before(database_url: str) -> None:
    engine = create_archive_engine(database_url)
    script = ScriptDirectory.from_config(alembic_config(engine))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions, "no migrations found"
    for revision in revisions:  # from empty, then each from the one before
        upgrade(engine, revision)
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == revision
    downgrade(engine, "base")
    assert "referrals" not in inspect(engine).get_table_names()
    upgrade(engine)
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_keeps_money_exact(database_url: str) -> None:
    from decimal import Decimal

    from sqlalchemy import text

    engine = create_archive_engine(database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO referrals (workflow_id, rfi_id, partner_id, region, need,"
                " company_size, status, transition_count, received_at, updated_at,"
                " estimated_deal_value)"
                " VALUES ('w', 'r', 'p', 'g', 'n', 's', 'New', 0, '2026-01-01', '2026-01-01',"
                " :value)"
            ),
            {"value": "12345678901234567.8901"},
        )
        stored = connection.execute(text("SELECT estimated_deal_value FROM referrals")).scalar()
    assert Decimal(str(stored)) == Decimal("12345678901234567.8901")
    engine.dispose()
