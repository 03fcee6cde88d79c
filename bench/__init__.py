"""Benchmarks: the referral lifecycle against a bare Temporal baseline on the same server."""
