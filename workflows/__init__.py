"""Referral workflows: the task queue they run on and the search attributes they keep."""

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "referrals"  # the default of REFERRALS_TASK_QUEUE
WORKFLOW_TYPE = "ReferralWorkflow"

STATUS_KEY = SearchAttributeKey.for_keyword("ReferralStatus")
PARTNER_KEY = SearchAttributeKey.for_keyword("PartnerId")
RFI_KEY = SearchAttributeKey.for_keyword("RfiId")
REGION_KEY = SearchAttributeKey.for_keyword("Region")
RESPOND_BY_KEY = SearchAttributeKey.for_datetime("RespondBy")

SEARCH_ATTRIBUTE_KEYS = (STATUS_KEY, PARTNER_KEY, RFI_KEY, REGION_KEY, RESPOND_BY_KEY)
# ReferralStatus of a run that failed before its referral started (a partner that does not
# serve the region, an invalid input): not a referral status, and no deadline runs.
FAILED_STATUS = "Failed"
