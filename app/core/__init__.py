"""Sans-I/O protocol and domain logic: bytes and time in, events and bytes out.

Nothing in this package may import asyncio, aiosqlite, quart, hypercorn or anything from
app.store / app.service / app.server / app.cli (tests/test_layering.py enforces it).
"""
