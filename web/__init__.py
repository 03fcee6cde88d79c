"""The partner web service: one-click email links, the partner's pages and API.

Imports nothing heavy here: the worker signs links with `web.links` alone.
"""
