"""webhook against a real HTTP receiver: what its errors may say, and how much of an
answer it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.base import TransientError
from tests.integrations.hosted import build, content
from tests.servers.base import free_port
from watcher.core.secret import redact


def test_a_token_in_the_hook_url_is_not_in_the_delivery_error(tmp_path: Path) -> None:
    # Nothing listens: requests names the URL's path in its exception.
    url = f"http://127.0.0.1:{free_port()}/services/T0HOOK01/B0HOOK02/Hook${{HOOK_TOKEN}}"
    hook = build(tmp_path, "webhook", {"url": url}, environ={"HOOK_TOKEN": "Tok3n-5a7e"})
    with pytest.raises(TransientError) as caught:
        hook.open(content())
    assert "Tok3n-5a7e" in str(caught.value)  # what the library said, before it is stored
    assert "5a7e" not in redact(str(caught.value))
