"""Text through the archive, on SQLite and PostgreSQL: a NUL byte, which PostgreSQL cannot
store, failed the archive write on every attempt, so the models refuse it at the input now;
and any text they accept is stored and read back unchanged (fuzzed)."""

import string
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.exc import DataError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.archive import ArchiveActivities
from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from tests.factories import ACME_BERLIN, act, make_rfi, rfi_data
from tests.servers import fresh_postgres_database
from workflows.lifecycle import ActionRejected, Referral
from workflows.models import Rfi, StatusView, referral_workflow_id

NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)
NUL_NEED = "ERP\u0000 move"
NUL_REASON = "Out of\u0000 scope"


@pytest.fixture
def postgres_store(postgres_server_url: str) -> Iterator[ArchiveStore]:
    engine = create_archive_engine(fresh_postgres_database(postgres_server_url))
    upgrade(engine)
    yield ArchiveStore(engine)
    engine.dispose()


def declined(rfi: Rfi, reason: str = "Out of scope") -> Referral:
    """A referral through every write that stores text: the customer once interested, then
    the partner's reason."""
    referral = Referral(rfi, "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    act(referral, "interested", None, NOW)
    act(referral, "decline", {"reason": reason}, NOW)
    return referral


def fails_on_every_attempt(store: ArchiveStore, view: StatusView) -> None:
    activities, environment = ArchiveActivities(store), ActivityEnvironment()
    for _ in range(3):  # what the retries of the workflow's archive activity did, forever
        with pytest.raises(ApplicationError, match="text fields cannot contain NUL"):
            environment.run(activities.record_referral, view)
        with pytest.raises(DataError, match="text fields cannot contain NUL"):
            store.record(view)


def test_a_nul_byte_failed_every_postgresql_write_and_is_refused_at_the_input(
    postgres_store: ArchiveStore,
) -> None:
    # What got in before the models refused it (no validation here, as then).
    with_nul_need = declined(make_rfi().model_copy(update={"need": NUL_NEED})).view()
    view = declined(make_rfi()).view()
    [interested, decline] = view.transitions
    with_nul_reason = view.model_copy(
        update={"transitions": [interested, decline.model_copy(update={"reason": NUL_REASON})]}
    )
    for bad in (with_nul_need, with_nul_reason):
        fails_on_every_attempt(postgres_store, bad)
        assert postgres_store.history(referral_workflow_id(bad.rfi_id, bad.partner_id)) is None

    # Now: the workflow's input and the action are refused, naming the character.
    with pytest.raises(ValidationError, match=r"need\n  control character U\+0000 is not"):
        Rfi.model_validate(rfi_data(need=NUL_NEED))
    referral = Referral(make_rfi(), "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    act(referral, "interested", None, NOW)
    with pytest.raises(ActionRejected, match=r"reason: control character U\+0000 is not allowed"):
        act(referral, "decline", {"reason": NUL_REASON}, NOW)


# --- Fuzzed: refused by the models, or archived unchanged ---------------------------------

# Every text field of the RFI (the customer's appear once the partner is interested) and
# the partner's reason; `need` and `reason` are the long texts, which keep line breaks.
FIELDS = [
    "location",
    "need",
    "company_size",
    "customer.name",
    "customer.company",
    "customer.phone",
    "customer.email",
    "reason",
]
LONG = {"need", "reason"}
TEXT = st.text(
    st.characters(exclude_categories=())  # surrogates too
    | st.sampled_from("\x00\t\n\r \x0b\x1b\x7f\x85\xa0\u2028\ufeff\ud800\udfff\U0010ffff"),
    max_size=30,
)
EMAIL = st.tuples(
    TEXT | st.text(st.sampled_from(string.ascii_letters + string.digits + ".+-_'"), min_size=1),
    st.sampled_from(["lopez.example", "Lopez.Example", "bücher.example"]),
).map("@".join)


def forbidden(field: str, value: str) -> str | None:
    """The first character the contract refuses: Unicode category Cc or Cs, but for line
    breaks and tabs in a long text."""
    allowed = "\t\n\r" if field in LONG else ""
    return next(
        (c for c in value if unicodedata.category(c) in ("Cc", "Cs") and c not in allowed),
        None,
    )


def referral_with(field: str, value: str) -> Referral:
    data = rfi_data()
    if field.startswith("customer."):
        data["customer"][field.removeprefix("customer.")] = value
    elif field != "reason":
        data[field] = value
    rfi = Rfi.model_validate(data)
    return declined(rfi, value) if field == "reason" else declined(rfi)


def test_any_text_is_refused_or_archived_unchanged(database_url: str) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(data=st.data())
    def refused_or_archived_unchanged(data: st.DataObject) -> None:
        field = data.draw(st.sampled_from(FIELDS))
        value = data.draw(EMAIL if field == "customer.email" else TEXT)
        refused_for = forbidden(field, value)
        try:
            referral = referral_with(field, value)
        except ValidationError as error:
            why = error.errors()[0]["msg"]
        except ActionRejected as rejected:
            why = rejected.reason
        else:
            assert refused_for is None, f"{field} took U+{ord(refused_for):04X}"
            store.record(referral.view())
            row = store.history(referral.workflow_id)
            assert row is not None
            rfi, customer = referral.rfi, referral.rfi.customer
            assert (row.location, row.need, row.company_size) == (
                rfi.location,
                rfi.need,
                rfi.company_size,
            )
            assert (
                row.customer_name,
                row.customer_company,
                row.customer_email,
                row.customer_phone,
            ) == (customer.name, customer.company, customer.email, customer.phone)
            assert [t.reason for t in row.transitions] == [t.reason for t in referral.transitions]
            return
        if refused_for is not None:
            assert f"U+{ord(refused_for):04X} is not allowed" in why

    refused_or_archived_unchanged()
    engine.dispose()
