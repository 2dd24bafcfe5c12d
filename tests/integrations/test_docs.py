"""The config examples in docs/readme/integrations.md load as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import integrations
from tests.support.helpers import config_from

DOC = Path(__file__).resolve().parents[2] / "docs" / "readme" / "integrations.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
ENV = {
    name: f"value-of-{name.lower()}-1234"
    for name in set(re.findall(r"\$\{(\w+)\}", DOC.read_text()))
}
ENV["SLACK_URL"] = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
ENV["TWILIO_ACCOUNT_SID"] = "AC" + "0" * 32


def _as_config(block: str) -> str:
    head = "site: acme\nlisten: null\n"
    if block.startswith("integrations:"):
        return head + block
    if block.startswith("paging:"):
        return head + "integrations:\n" + textwrap.indent(block, "  ")
    kinds = re.findall(r"^- (\w+):", block, re.M)
    role = (
        "tickets"
        if all("tickets" in integrations.integration_class(k).roles for k in kinds)
        else "paging"
    )
    return head + f"integrations:\n  {role}:\n" + textwrap.indent(block, "    ")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:30] for b in BLOCKS])
def test_the_example_loads(tmp_path: Path, block: str) -> None:
    config = config_from(tmp_path, _as_config(block), environ=ENV)
    assert config.model.integrations.entries()


def test_every_integration_has_an_example() -> None:
    text = DOC.read_text()
    for kind in integrations.kinds():
        assert f"- {kind}:" in text or f"{kind}: {{" in text, kind
