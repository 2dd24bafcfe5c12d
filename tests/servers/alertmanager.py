"""Real Prometheus Alertmanager (Debian's prometheus-alertmanager) and amtool, plus a
Prometheus that evaluates alert rules and sends them to it.

:class:`Alertmanager` runs with its own config and storage in a temp dir on a free
loopback port, clustering off (``--cluster.listen-address=`` empty, or it binds
0.0.0.0:9094), routing every alert to one webhook with a bearer token and short
``group_wait``/``group_interval``/``repeat_interval``. :func:`alerting_prometheus` is
a :class:`tests.servers.prometheus.Prometheus` whose config also loads an alert rule
file and points at the Alertmanager.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .base import LOOPBACK, ManagedProcess, free_port, require_binary, urlopen, wait_for_http
from .prometheus import Prometheus

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"


class Alertmanager:
    """Alertmanager sending every alert to ``webhook_url`` with ``Bearer <token>``."""

    def __init__(
        self,
        workdir: Path,
        webhook_url: str,
        *,
        token: str | None = None,
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "4s",
        max_alerts: int = 0,
        port: int | None = None,
    ) -> None:
        require_binary(ALERTMANAGER)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.config_path = self.workdir / "alertmanager.yml"
        self.log_path = self.workdir / "alertmanager.log"
        webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
        if max_alerts:
            webhook["max_alerts"] = max_alerts
        if token is not None:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
        config = {
            "route": {
                "receiver": "watcher",
                "group_by": ["alertname", "instance"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [{"name": "watcher", "webhook_configs": [webhook]}],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process = ManagedProcess(
            [
                ALERTMANAGER,
                f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            self.log_path,
            name=f"alertmanager:{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout: float = 20.0) -> Alertmanager:
        self._process.start()
        wait_for_http(f"{self.url}/-/ready", timeout, process=self._process, expect_status=200)
        return self

    def stop(self) -> None:
        self._process.stop()

    def running(self) -> bool:
        return self._process.running()

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines)

    def alerts(self, *filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced and inhibited), narrowed by matchers."""
        query = "&".join(f"filter={urllib.request.quote(f)}" for f in filters)
        with urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as resp:
            return list(json.loads(resp.read()))

    def amtool_query(self, *matchers: str) -> str:
        """``amtool alert query`` output (the simple format) for ``matchers``."""
        amtool = require_binary(AMTOOL)
        proc = subprocess.run(
            [amtool, "alert", "query", f"--alertmanager.url={self.url}", "-o", "simple", *matchers],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"amtool failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout


class ScrapeTarget:
    """A node for Prometheus to scrape: ``python -m http.server`` serving ``/metrics``
    from a directory, as a process of its own, so that stopping it closes every
    connection (a thread server stopped in-process keeps its keep-alive ones)."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        (self.workdir / "www").mkdir(parents=True, exist_ok=True)
        (self.workdir / "www" / "metrics").write_text("# TYPE node_up gauge\nnode_up 1\n")
        self.port = port if port is not None else free_port()
        self._process = ManagedProcess(
            [
                sys.executable,
                "-m",
                "http.server",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--directory",
                str(self.workdir / "www"),
            ],
            self.workdir / "node.log",
            name=f"node:{self.port}",
        )

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> ScrapeTarget:
        self._process.start()
        wait_for_http(
            f"http://{self.address}/metrics", timeout, process=self._process, expect_status=200
        )
        return self

    def stop(self) -> None:
        self._process.stop()


def alerting_prometheus(
    workdir: Path,
    targets: Sequence[str],
    alertmanager: Alertmanager,
    rules: Sequence[dict[str, Any]],
    *,
    job: str = "node",
) -> Prometheus:
    """A Prometheus scraping ``targets`` every second, evaluating ``rules`` (one group)
    every second and sending what fires to ``alertmanager``. Not started."""
    prometheus = Prometheus(workdir, targets, job=job)
    rule_file = prometheus.workdir / "rules.yml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "test", "interval": "1s", "rules": list(rules)}]})
    )
    config = yaml.safe_load(prometheus.config_path.read_text())
    config["rule_files"] = [str(rule_file)]
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [f"{LOOPBACK}:{alertmanager.port}"]}]}]
    }
    prometheus.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return prometheus
