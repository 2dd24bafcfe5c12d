"""Real Prometheus (Debian's /usr/bin/prometheus), promtool, and the blackbox exporter.

:class:`Prometheus` scrapes one job (our exporter) every second with its own config and TSDB
in a temp dir, on a free loopback port. Ready (``/-/ready`` 200) in ~0.05 s, but the first
scrape only comes ~5-6 s after start: Prometheus 2.42's scrape manager applies target
updates on a fixed 5 s tick, with no flag to shorten it. Reuse one instance where you can. :class:`BlackboxExporter` is for benchmarks: it is installed only by
``install-debian-deps.sh --bench`` (package prometheus-blackbox-exporter), ready in ~0.1 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .base import LOOPBACK, ManagedProcess, free_port, require_binary, urlopen, wait_for_http

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Prometheus:
    """Prometheus scraping ``targets`` (``host:port`` strings) as job ``job`` every 1 s."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        job: str = "watcher",
        metrics_path: str = "/metrics",
        scheme: str = "http",
        scrape_interval: str = "1s",
        port: int | None = None,
        extra_scrape_configs: Sequence[dict[str, Any]] = (),
    ) -> None:
        require_binary(PROMETHEUS)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.job = job
        self.targets = list(targets)
        self.config_path = self.workdir / "prometheus.yml"
        self.storage_path = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": scrape_interval,
                "evaluation_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": metrics_path,
                    "scheme": scheme,
                    "static_configs": [{"targets": self.targets}],
                },
                *extra_scrape_configs,
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process = ManagedProcess(
            [
                PROMETHEUS,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage_path}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--web.enable-lifecycle",  # lets tests POST /-/reload after editing the config
                "--log.level=info",
            ],
            self.log_path,
            name=f"prometheus:{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout: float = 20.0) -> Prometheus:
        self._process.start()
        wait_for_http(f"{self.url}/-/ready", timeout, process=self._process, expect_status=200)
        return self

    def stop(self) -> None:
        self._process.stop()

    def running(self) -> bool:
        return self._process.running()

    # -- API helpers
    def active_targets(self, job: str | None = None) -> list[dict[str, Any]]:
        data = _get_json(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"]
        return [t for t in data if job is None or t["labels"].get("job") == job]

    def wait_for_scrape(
        self, job: str | None = None, timeout: float = 15.0, *, require_up: bool = True
    ) -> str:
        """Wait until ``job``'s target is ``up`` and return its lastError ('' when fine).

        ``require_up=False`` waits only for a finished scrape, up or down, and returns its
        lastError — for tests that expect the scrape to fail and want the reason.
        """
        job = job or self.job
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for target in self.active_targets(job):
                last = target
                health = target.get("health")
                if health == "up" or (not require_up and health == "down"):
                    return str(target.get("lastError", ""))
            time.sleep(0.1)
        raise TimeoutError(
            f"job {job!r} not {'up' if require_up else 'scraped'} after {timeout}s; last target state: "
            f"{json.dumps(last)}\n--- {self.log_path} ---\n{self._process.log_tail(20)}"
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (list of {metric, value})."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = _get_json(url)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return list(body["data"]["result"])

    def reload(self) -> None:
        """Re-read the config file (after a test edits it)."""
        urlopen(urllib.request.Request(f"{self.url}/-/reload", method="POST"), timeout=10).close()


def promtool_check_metrics(text: str) -> tuple[bool, str]:
    """Lint exposition text with ``promtool check metrics``; returns (ok, combined output)."""
    promtool = require_binary(PROMTOOL)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


class BlackboxExporter:
    """prometheus-blackbox-exporter with modules ``http_2xx``, ``tls`` (verifies against
    ``ca_file`` if given, never skips verification) and ``tcp_connect``."""

    def __init__(
        self, workdir: Path, *, ca_file: Path | None = None, port: int | None = None
    ) -> None:
        require_binary(BLACKBOX)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.config_path = self.workdir / "blackbox.yml"
        self.log_path = self.workdir / "blackbox.log"
        tls_config: dict[str, Any] = {"insecure_skip_verify": False}
        if ca_file is not None:
            tls_config["ca_file"] = str(ca_file)
        config = {
            "modules": {
                "http_2xx": {
                    "prober": "http",
                    "timeout": "5s",
                    "http": {"preferred_ip_protocol": "ip4", "tls_config": tls_config},
                },
                "tls": {
                    "prober": "http",
                    "timeout": "5s",
                    "http": {
                        "preferred_ip_protocol": "ip4",
                        "fail_if_not_ssl": True,
                        "tls_config": tls_config,
                    },
                },
                "tcp_connect": {
                    "prober": "tcp",
                    "timeout": "5s",
                    "tcp": {"preferred_ip_protocol": "ip4"},
                },
            }
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process = ManagedProcess(
            [
                BLACKBOX,
                f"--config.file={self.config_path}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
            ],
            self.log_path,
            name=f"blackbox:{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> BlackboxExporter:
        self._process.start()
        wait_for_http(f"{self.url}/-/healthy", timeout, process=self._process, expect_status=200)
        return self

    def stop(self) -> None:
        self._process.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def probe(self, target: str, module: str = "http_2xx") -> str:
        """Run one probe; returns the exposition text the exporter answers."""
        url = f"{self.url}/probe?" + urllib.parse.urlencode({"target": target, "module": module})
        with urlopen(url, timeout=15) as resp:
            return resp.read().decode()

    def probe_success(self, target: str, module: str = "http_2xx") -> bool:
        for line in self.probe(target, module).splitlines():
            if line.startswith("probe_success "):
                return float(line.split()[1]) == 1.0
        return False
