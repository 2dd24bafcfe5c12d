"""The config examples in docs/readme/alert-quality.md load as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.helpers import config_from

DOC = Path(__file__).resolve().parents[3] / "docs" / "readme" / "alert-quality.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
HEAD = "site: acme\nlisten: null\nstate: state.db\n"
TARGETS = """
targets:
  - {name: db1, probes: [{tcp: {host: 127.0.0.1, port: 5432}}]}
  - {name: files1, labels: {role: files}, probes: [{tcp: {host: 127.0.0.1, port: 445}}]}
  - {name: lab1, probes: [{tcp: {host: 127.0.0.1, port: 22}}]}
""" + "".join(
    f"  - {{name: mail{n}, labels: {{role: mail}}, probes: [{{tcp: {{host: 127.0.0.1, port: 25}}}}]}}\n"
    for n in range(1, 10)
)


def _as_config(tmp_path: Path, block: str) -> str:
    if block.startswith("targets:"):
        return HEAD + block
    if block.startswith("# site-rules.yml"):
        (tmp_path / "site.yml").write_text(block)
        return HEAD + "rules: [default, site.yml]\n" + TARGETS
    return HEAD + TARGETS + block


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:30] for b in BLOCKS])
def test_the_example_loads(tmp_path: Path, block: str) -> None:
    config = config_from(tmp_path, _as_config(tmp_path, block))
    assert config.model


def test_every_feature_has_an_example() -> None:
    text = "".join(BLOCKS)
    for key in (
        "depends_on:",
        "outages:",
        "flapping:",
        "maintenance:",
        "remind_every:",
        "cron:",
        "days:",
        "start:",
    ):
        assert key in text, key
