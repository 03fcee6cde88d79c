"""The referral archive: every referral and transition in SQL, long after Temporal forgot them."""
