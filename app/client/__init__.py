"""Clients of our own protocol implementation (tests, load generator)."""
