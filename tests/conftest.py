"""Shared fixtures: the real servers in tests/servers, and a few builders."""

pytest_plugins = ["tests.servers.fixtures"]
