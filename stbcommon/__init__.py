"""Plumbing every daemon shares: settings loading, structured logs, metrics endpoint, backoff."""
