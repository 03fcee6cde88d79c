"""The partner directory (marketing profiles) and the activity that looks contacts up.

`Directory.contact_for` raises plain errors, ``PartnerNotFound`` and ``RegionNotServed``;
`DirectoryActivities.look_up_contact` turns them into non-retryable ``ApplicationError``s of
types named alike (``PARTNER_NOT_FOUND``, ``REGION_NOT_SERVED``), which fail the referral at
once. A directory file that cannot be read fails the activity as it is, and is retried.
Messages name the partner, the region and the location: no one's contact.
"""

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.models import ContactLookup, Email, Id, PartnerContact, Text

# The ApplicationError types `DirectoryActivities.look_up_contact` fails with, non-retryable.
PARTNER_NOT_FOUND = "PartnerNotFound"
REGION_NOT_SERVED = "RegionNotServed"


class PartnerNotFound(Exception):
    """No partner in the directory has the id looked up."""


class RegionNotServed(Exception):
    """The partner has no profile for the region, neither region-wide nor for the location."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Id
    location: Text | None = None
    contact_name: Text
    contact_email: Email


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    name: Text
    profiles: list[Profile]


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partners: list[Partner]

    def partners_serving(self, region: str, location: str | None) -> list[Partner]:
        """Partners with a region-wide profile for the region, or one for the location."""
        return [
            partner
            for partner in self.partners
            if any(p.region == region and p.location in (None, location) for p in partner.profiles)
        ]

    def contact_by_email(self, email: str) -> tuple["Partner", Profile] | None:
        """The partner and profile whose contact has this address, compared without case."""
        wanted = email.strip().casefold()
        for partner in self.partners:
            for profile in partner.profiles:
                if profile.contact_email.casefold() == wanted:
                    return partner, profile
        return None

    def contact_for(self, lookup: ContactLookup) -> PartnerContact:
        """The profile for the region and location, else the region-wide one; raises
        PartnerNotFound or RegionNotServed."""
        partner = next((p for p in self.partners if p.id == lookup.partner_id), None)
        if partner is None:
            raise PartnerNotFound(f"unknown partner {lookup.partner_id!r}")
        in_region = [p for p in partner.profiles if p.region == lookup.region]
        exact = [p for p in in_region if lookup.location and p.location == lookup.location]
        region_wide = [p for p in in_region if p.location is None]
        if not exact and not region_wide:
            where = lookup.region + (f"/{lookup.location}" if lookup.location else "")
            raise RegionNotServed(f"partner {lookup.partner_id!r} does not serve {where}")
        profile = (exact or region_wide)[0]
        return PartnerContact(
            partner_id=partner.id,
            partner_name=partner.name,
            contact_name=profile.contact_name,
            contact_email=profile.contact_email,
            region=profile.region,
            location=profile.location,
        )


class DirectoryFile:
    """The directory's JSON file, read again whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[tuple[int, int], Directory] | None = None

    def load(self) -> Directory:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._cached is None or self._cached[0] != stamp:
            directory = Directory.model_validate(json.loads(self.path.read_bytes()))
            self._cached = (stamp, directory)
        return self._cached[1]


class DirectoryActivities:
    def __init__(self, directory: DirectoryFile) -> None:
        self._directory = directory

    # Async, on the worker's event loop: a look-up in memory (the file is read again only
    # when it changed) costs far less than a hop to the activity thread pool.
    @activity.defn(name="look_up_contact")
    async def look_up_contact(self, lookup: ContactLookup) -> PartnerContact:
        """Fails for good with PARTNER_NOT_FOUND or REGION_NOT_SERVED."""
        directory = self._directory.load()
        try:
            return directory.contact_for(lookup)
        except PartnerNotFound as error:
            raise ApplicationError(str(error), type=PARTNER_NOT_FOUND, non_retryable=True) from None
        except RegionNotServed as error:
            raise ApplicationError(str(error), type=REGION_NOT_SERVED, non_retryable=True) from None
