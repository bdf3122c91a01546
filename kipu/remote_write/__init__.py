"""Prometheus remote write 1.0: `codec` (pure), `policy` (pure), `client` (HTTP).

Import the submodule you need: the codec loads protobuf and cramjam, the client loads
the aiohttp client, and a program that needs neither should not pay for them.
"""
