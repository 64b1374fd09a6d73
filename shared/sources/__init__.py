"""Feeds and sitemaps as sources: reading them (read.py), expanding them into article URLs
(expand.py) and the registered ones the scheduler polls (registry.py), for the CLI and the
fetcher's scheduler alike."""
