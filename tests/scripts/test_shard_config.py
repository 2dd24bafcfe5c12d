"""scripts/shard_config.py: every target in one shard, linked targets together, each shard valid."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

from watcher.config.load import load_config

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shard_config.py"

CONFIG = """
site: acme-pune
state: state/watcher.db
listen: 127.0.0.1:9300
api_token: "${API_TOKEN}"
ssh: {user: monitor}
integrations:
  tickets:
    - webhook: {url: "http://127.0.0.1:9/hook", secret: "${HOOK_SECRET}"}
checkins:
  - {name: nightly-backup, period: 1d, grace: 2h}
targets:
  - {name: bastion, host: 127.0.0.11, probes: [{tcp: {port: 22}}]}
  - {name: inner, host: 127.0.9.2, via: bastion, probes: [{load: {}}, {memory: {}}]}
  - {name: db, host: 127.0.0.13, probes: [{tcp: {port: 5432}}]}
  - {name: app, host: 127.0.0.14, depends_on: [db], probes: [{http: {url: "http://127.0.0.14/"}}]}
"""


def _shard_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("shard_config", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_target_lands_in_one_shard_with_the_targets_it_reaches_through() -> None:
    parts = _shard_module().shard(yaml.safe_load(CONFIG), 3)
    where = {t["name"]: i for i, part in enumerate(parts) for t in part["targets"]}
    assert sorted(where) == ["app", "bastion", "db", "inner"]
    assert where["inner"] == where["bastion"] and where["app"] == where["db"]
    assert {p["site"] for p in parts} == {"acme-pune"}
    assert [p["state"] for p in parts] == [f"state/watcher-shard-{n}.db" for n in (1, 2, 3)]
    assert [p["listen"] for p in parts] == ["127.0.0.1:9300", "127.0.0.1:9301", "127.0.0.1:9302"]
    assert "checkins" in parts[0] and all("checkins" not in p for p in parts[1:])


def test_the_written_shards_are_valid_configs(tmp_path: Path) -> None:
    config = tmp_path / "watcher.yml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(config), "--shards", "2"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    names = []
    for number in (1, 2):
        shard = tmp_path / f"watcher-shard-{number}.yml"
        assert "${HOOK_SECRET}" in shard.read_text()  # references kept, not expanded
        loaded = load_config(shard, environ={"HOOK_SECRET": "s", "API_TOKEN": "t"})
        names += [t.name for t in loaded.model.targets]
    assert sorted(names) == ["app", "bastion", "db", "inner"]
