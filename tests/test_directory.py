"""The partner directory and the look_up_contact activity (in ActivityEnvironment, no Temporal
server): the directory raises plain errors, PartnerNotFound and RegionNotServed; the activity
turns them into the non-retryable ApplicationErrors of the same names that fail a referral at
once. What the workflow makes of them is in test_workflow.py."""

import json
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.directory import (
    PARTNER_NOT_FOUND,
    REGION_NOT_SERVED,
    DirectoryActivities,
    DirectoryFile,
    PartnerNotFound,
    RegionNotServed,
)
from tests.factories import SAMPLES
from workflows.models import ContactLookup

UNKNOWN = ContactLookup(partner_id="nobody", region="emea", location="Berlin")
# initech serves emea in Berlin only, and apac region-wide.
ELSEWHERE = ContactLookup(partner_id="initech", region="emea", location="Paris")


def sample_directory() -> DirectoryFile:
    return DirectoryFile(SAMPLES / "partners.json")


def test_the_failure_types_are_the_names_the_workflow_catches() -> None:
    assert (PARTNER_NOT_FOUND, REGION_NOT_SERVED) == ("PartnerNotFound", "RegionNotServed")


def test_the_directory_raises_plain_errors_that_name_the_partner_and_where() -> None:
    directory = sample_directory().load()

    with pytest.raises(PartnerNotFound, match=r"^unknown partner 'nobody'$"):
        directory.contact_for(UNKNOWN)
    with pytest.raises(RegionNotServed, match=r"^partner 'initech' does not serve emea/Paris$"):
        directory.contact_for(ELSEWHERE)
    with pytest.raises(RegionNotServed, match=r"^partner 'initech' does not serve amer$"):
        directory.contact_for(ContactLookup(partner_id="initech", region="amer"))


@pytest.mark.parametrize(
    ("lookup", "error_type", "says"),
    [
        (UNKNOWN, PARTNER_NOT_FOUND, "unknown partner 'nobody'"),
        (ELSEWHERE, REGION_NOT_SERVED, "partner 'initech' does not serve emea/Paris"),
    ],
    ids=["unknown-partner", "region-not-served"],
)
async def test_the_activity_fails_for_good_when_the_partner_cannot_take_the_referral(
    lookup: ContactLookup, error_type: str, says: str
) -> None:
    directory_activities = DirectoryActivities(sample_directory())

    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(directory_activities.look_up_contact, lookup)

    assert info.value.type == error_type
    assert info.value.non_retryable is True
    assert info.value.message == says
    assert info.value.__cause__ is None  # one failure, not the plain error behind it


async def test_the_activity_finds_the_contact_for_the_location_else_the_region() -> None:
    directory_activities = DirectoryActivities(sample_directory())
    berlin = ContactLookup(partner_id="acme-consulting", region="emea", location="Berlin")
    paris = ContactLookup(partner_id="acme-consulting", region="emea", location="Paris")

    in_berlin = await ActivityEnvironment().run(directory_activities.look_up_contact, berlin)
    in_paris = await ActivityEnvironment().run(directory_activities.look_up_contact, paris)

    assert (in_berlin.contact_name, in_berlin.location) == ("Jonas Weber", "Berlin")
    assert (in_paris.contact_name, in_paris.location) == ("Amira Haddad", None)


async def test_an_unreadable_directory_fails_the_activity_as_it_is_for_temporal_to_retry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "partners.json"
    path.write_text("{ half a file")
    directory_activities = DirectoryActivities(DirectoryFile(path))

    # Not an ApplicationError: Temporal retries it, as the workflow's policy allows.
    with pytest.raises(json.JSONDecodeError):
        await ActivityEnvironment().run(directory_activities.look_up_contact, UNKNOWN)
