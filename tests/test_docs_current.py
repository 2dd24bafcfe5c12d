"""The reader docs in docs/ say what the code does: generated parts are regenerated and
compared, links point at files that exist, and the audit picture is a real, small PNG."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.base import Integration, TicketRef
from tests.integrations.hosted import build, content
from tests.servers.httpd import HTTPTestServer
from tests.support.helpers import config_from

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
READER_DOCS = ["ops.md", "config.md", "helpdesk.md", "audits.md", "integrations.md"]


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_config_reference_matches_the_config_models() -> None:
    done = _run("build_config_doc.py")
    assert done.returncode == 0, done.stderr


def test_the_sample_ticket_is_what_the_renderer_writes_today() -> None:
    done = _run("build_ticket_sample.py")
    assert done.returncode == 0, done.stderr


def test_the_config_reference_names_every_probe_and_integration_kind() -> None:
    import integrations
    import probes

    text = (DOCS / "config.md").read_text()
    for kind in [*probes.kinds(), *integrations.kinds()]:
        assert f"### `{kind}`" in text, kind


@pytest.mark.parametrize("name", READER_DOCS)
def test_relative_links_in_the_reader_docs_point_at_files_that_exist(name: str) -> None:
    text = (DOCS / name).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (DOCS / target).resolve().exists(), f"{name} links to missing {target}"


def test_the_audit_sample_picture_is_a_png_small_enough_to_mail() -> None:
    picture = DOCS / "img" / "audit-sample.png"
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) <= 300 * 1024


# ----------------------------------------------------------------- the webhook contract

INTEGRATIONS_DOC = DOCS / "integrations.md"


def _documented_payload() -> dict:
    (block,) = re.findall(r"```json\n(.*?)```", INTEGRATIONS_DOC.read_text(), re.S)
    return json.loads(block)


def _hook(tmp_path: Path, server: HTTPTestServer) -> Integration:
    return build(
        tmp_path,
        "webhook",
        {"url": server.url_for("/hook"), "secret": "${WEBHOOK_SECRET}"},
        environ={"WEBHOOK_SECRET": "s3cret-for-the-docs"},
    )


def test_a_webhook_delivery_carries_the_documented_headers_payload_and_signature(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    hook = _hook(tmp_path, http_server)
    try:
        hook.open(content(delivery_id=17))
    finally:
        hook.close()
    (request,) = http_server.requests_for("/hook")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-watcher-event"] == "ticket.open"
    assert headers["x-watcher-delivery"] == "17"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("watcher/")
    # As the doc says: sha256= and the hex HMAC-SHA256 of the raw body, keyed with the secret
    expected = (
        "sha256=" + hmac.new(b"s3cret-for-the-docs", request.body, hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(headers["x-watcher-signature"], expected)
    sent = json.loads(request.body)
    documented = _documented_payload()
    assert sorted(sent) == sorted(documented)
    assert sorted(sent["incident"]) == sorted(documented["incident"])
    assert sent["delivery_id"] == 17 and sent["version"] == documented["version"]
    table = INTEGRATIONS_DOC.read_text().split("### The payload", 1)[1]
    for field in sent["incident"]:
        assert f"`incident.{field}`" in table or f".{field}`" in table, field


def test_the_events_the_contract_lists_are_the_events_the_webhook_sends(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    hook = _hook(tmp_path, http_server)
    ref = TicketRef("w0123456789abcdef01234567")
    try:
        hook.open(content())
        for method in (hook.comment, hook.set_priority, hook.resolve, hook.reopen):
            method(ref, content())
        hook.page(content())
        hook.page_acknowledge(content())
        hook.page_resolve(content())
    finally:
        hook.close()
    sent = {
        {k.lower(): v for k, v in r.headers.items()}["x-watcher-event"]
        for r in http_server.requests_for("/hook")
    }
    section = INTEGRATIONS_DOC.read_text().split("## What is sent, and when", 1)[1]
    section = section.split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `\w+` \| `([a-z]+\.[a-z]+)` \|", section, re.M))
    assert documented == sent


def test_the_backoff_table_is_the_backoff_the_outbox_waits() -> None:
    from watcher.delivery.outbox import backoff

    text = INTEGRATIONS_DOC.read_text()
    row = re.search(r"^\| waits about \|(.+)\|$", text, re.M)
    assert row is not None
    waits = [float(re.match(r"\s*(\d+) s", cell).group(1)) for cell in row.group(1).split("|")]
    for attempt, wait in enumerate(waits, start=1):
        for _ in range(50):
            assert 0.8 * wait <= backoff(attempt) <= 1.2 * wait, (attempt, wait)
    assert backoff(9, retry_after=7200) == 3600  # Retry-After honoured up to an hour


@pytest.mark.parametrize(
    "block",
    re.findall(r"```yaml\n(.*?)```", INTEGRATIONS_DOC.read_text(), re.S),
    ids=lambda b: b.splitlines()[0][:30],
)
def test_the_integration_examples_load_as_written(tmp_path: Path, block: str) -> None:
    from tests.integrations.test_docs import ENV, _as_config

    environ = {
        **ENV,
        **{n: f"value-of-{n.lower()}-1234" for n in re.findall(r"\$\{(\w+)\}", block)},
    }
    environ["SLACK_URL"] = ENV["SLACK_URL"]
    environ["TWILIO_ACCOUNT_SID"] = ENV["TWILIO_ACCOUNT_SID"]
    config = config_from(tmp_path, _as_config(block.strip() + "\n"), environ=environ)
    assert config.model.integrations.entries()


@pytest.mark.parametrize(
    ("name", "block"),
    [
        (name, block)
        for name in ("ops.md", "audits.md", "helpdesk.md")
        for block in re.findall(r"```yaml\n(.*?)```", (DOCS / name).read_text(), re.S)
    ],
    ids=lambda value: value if value.endswith(".md") else value.splitlines()[0][:30],
)
def test_the_config_examples_in_the_reader_docs_load_as_written(
    tmp_path: Path, name: str, block: str
) -> None:
    config_from(tmp_path, "site: acme\n" + block, environ={})
