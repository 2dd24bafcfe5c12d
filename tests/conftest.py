"""Shared fixtures: the real servers in tests/servers, and a few builders."""

import os

# Tests run checks every few hundred milliseconds to see many rounds quickly; a real
# config's interval starts at 1s. Set here so that daemons the tests start inherit it.
os.environ.setdefault("WATCHER_MIN_INTERVAL", "100ms")

pytest_plugins = ["tests.servers.fixtures"]
