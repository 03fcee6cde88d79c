"""Starting and driving referrals: settings, the Temporal client and the `referrals` command."""
