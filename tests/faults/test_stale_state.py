"""Stale state after a check fails as a whole, and the audit's "now" figures.

A check with several items (disk paths, du paths, services) that cannot run at all (SSH
refused, host key changed, timeout) reports one error per item, labelled like that item's
own results, so each item's recovery replaces its own error. A check whose items are found
only at run time (disk without paths) fails with one unlabelled error; once it answers per
item again, that error and its incidents are cleared too. Real sshd, real tmpfs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from probes.base import CommandResult, Probe
from probes.disk import DiskConfig, DiskProbe
from probes.du import DuConfig, DuProbe
from probes.service import ServiceConfig, ServiceProbe
from tests.probes.test_agent_checkins import MdmServer, device, fleet, serve_linked
from tests.servers.disk import SmallFs
from tests.servers.sshd import Sshd
from tests.support.helpers import config_from
from tests.support.rig import Rig
from tests.support.ssh_helpers import context, new_pool, run_check, settings_for_sshd
from watcher.app.pipeline import Engine
from watcher.audit.build import build_audit
from watcher.schedule.scheduler import Job, Scheduler
from watcher.web.metrics import Metrics


def _ssh_config(sshd: Sshd, known_hosts: Path, disk: str) -> str:
    return f"""
        site: acme
        state: watcher.db
        listen: null
        ssh: {{user: {sshd.user}, key_file: {sshd.client_keys.ed25519}, known_hosts: {known_hosts}}}
        targets:
          - name: files
            host: {sshd.host}
            transport: ssh
            ssh: {{port: {sshd.port}}}
            probes:
              - disk: {disk}
    """


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    """The rigs a test builds, closed after it (their SSH pools and state files)."""
    built: list[Rig] = []
    yield built
    for rig in built:
        rig.close()


def _unresolved(rig: Rig) -> list[str]:
    return [
        f"{i.state} {i.priority or '-'} {i.group}" for i in rig.incidents() if i.state != "resolved"
    ]


def test_a_changed_host_key_errors_each_disk_path_and_the_fix_leaves_only_ok_results(
    tmp_path: Path,
    sshd: Sshd,
    sshd_factory: Callable[..., Sshd],
    small_fs: SmallFs,
    rigs: list[Rig],
) -> None:
    first, second = str(small_fs.path), str(small_fs.path / "spool")
    (small_fs.path / "spool").mkdir()
    impostor = sshd_factory(start=False)  # another host key, never started
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {impostor.host_public_key_line}\n")
    rig = Rig(tmp_path, _ssh_config(sshd, known_hosts, f"{{paths: [{first}, {second}]}}"))
    rigs.append(rig)

    rig.rounds(2)
    failed = rig.round()
    assert sorted((r.status, r.reason, r.labels.get("path")) for r in failed) == [
        ("error", "host_key_changed", first),
        ("error", "host_key_changed", second),
    ]

    sshd.write_known_hosts(known_hosts)  # the key is verified and put right
    rig.rounds(3)

    latest = rig.engine.latest()
    assert sorted((r.status, r.labels.get("path")) for r in latest) == [
        ("ok", first),
        ("ok", second),
    ]
    assert all(r.status == "ok" for r in rig.store.latest())
    assert _unresolved(rig) == []
    [host_key] = rig.incidents()  # the security incident, opened and resolved
    assert (host_key.group, host_key.state) == ("ssh host key", "resolved")


@pytest.mark.parametrize(
    ("minutes_down", "incident_was"),
    [(3, "pending"), (20, "open")],
    ids=["before-the-hold-is-met", "after-it-opened"],
)
def test_a_disk_check_of_found_mounts_that_recovers_leaves_no_unlabelled_error_nor_incident(
    tmp_path: Path,
    sshd: Sshd,
    rigs: list[Rig],
    minutes_down: int,
    incident_was: str,
) -> None:
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts")
    # exclude_types: [] lists every mount, tmpfs ones too: some are there on any machine
    rig = Rig(tmp_path, _ssh_config(sshd, known_hosts, "{exclude_types: []}"))
    rigs.append(rig)
    sshd.stop()
    for _ in range(minutes_down):
        [down] = rig.round()
        assert (down.status, down.reason, down.item) == ("error", "unreachable", "")
    [standing] = rig.incidents()
    assert (standing.state, standing.item) == (incident_was, "")

    sshd.start()
    rig.rounds(3)

    assert rig.engine.latest() and all(r.item for r in rig.engine.latest())
    assert all(r.status == "ok" for r in rig.engine.latest())
    assert _unresolved(rig) == []
    assert [r for r in rig.store.latest() if not r.item] == []  # a restart brings none back
    restarted = Engine(rig.config, rig.store, clock=rig.clock)
    assert all(r.item for r in restarted.latest())


@pytest.mark.parametrize(
    ("probe", "items"),
    [
        (DiskProbe(DiskConfig(paths=["/", "/tmp"])), [{"path": "/"}, {"path": "/tmp"}]),
        (
            DuProbe(
                DuConfig(paths=["/var", "/srv"], old_files={"paths": ["/var/log"]})  # type: ignore[arg-type]
            ),
            [
                {"path": "/var"},
                {"path": "/srv"},
                {"path": "/var/log", "older_than": "30d"},
            ],
        ),
        (
            ServiceProbe(ServiceConfig(unit=["postfix.service", "dovecot.service"])),
            [{"service": "postfix.service"}, {"service": "dovecot.service"}],
        ),
        (
            ServiceProbe(ServiceConfig(process=["sshd", "cron"])),
            [{"service": "sshd"}, {"service": "cron"}],
        ),
        (ServiceProbe(ServiceConfig(pattern="rsync --daemon")), [{"service": "rsync --daemon"}]),
    ],
    ids=["disk", "du", "service-units", "service-processes", "service-pattern"],
)
def test_an_unreachable_host_gives_each_configured_item_its_own_labelled_error(
    sshd: Sshd, probe: Probe, items: list[dict[str, str]]
) -> None:
    settings = settings_for_sshd(sshd)
    sshd.stop()
    with new_pool() as pool:
        results = run_check(probe, pool.runner(settings))
    assert [dict(r.labels) for r in results] == items
    assert {(r.status, r.reason) for r in results} == {("error", "unreachable")}


class Wedged:
    """A runner stuck past any timeout, like a command wedged in the kernel."""

    description = "wedged"

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        self.release.wait(30)
        return CommandResult(1, "", "released", 0.0)


def test_a_check_past_its_hard_timeout_reports_each_path_as_timed_out(tmp_path: Path) -> None:
    config = config_from(
        tmp_path, "site: acme\ntargets: [{name: t, probes: [{disk: {paths: [/, /tmp]}}]}]\n"
    )
    target = config.model.targets[0]
    spec = target.probe_specs()[0]
    runner = Wedged()
    ctx = context(runner, timeout=0.2)
    job = Job(target, spec, spec.probe_class(spec.config), ctx, 60, 0.2)
    scheduler = Scheduler([job], workers=1, on_results=lambda r: None, metrics=Metrics())
    try:
        results = scheduler.run_round()
    finally:
        runner.release.set()
        scheduler.stop()
    assert [(r.status, r.reason, dict(r.labels)) for r in results] == [
        ("error", "timeout", {"path": "/"}),
        ("error", "timeout", {"path": "/tmp"}),
    ]


class Broken:
    """A runner with a bug in it: the probe raises, the check fails as a whole."""

    description = "broken"

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        raise RuntimeError("unexpected state")


def test_a_probe_that_raises_reports_each_path_as_an_error() -> None:
    results = run_check(DiskProbe(DiskConfig(paths=["/", "/tmp"])), Broken())
    assert [(r.status, dict(r.labels)) for r in results] == [
        ("error", {"path": "/"}),
        ("error", {"path": "/tmp"}),
    ]
    assert all("probe crashed: RuntimeError: unexpected state" in r.message for r in results)


def test_the_audit_shows_the_disk_as_full_as_its_latest_sample_in_whole_bytes(
    tmp_path: Path, small_fs: SmallFs, rigs: list[Rig]
) -> None:
    rig = Rig(
        tmp_path,
        f"""
        site: acme
        state: watcher.db
        listen: null
        targets:
          - name: files
            probes:
              - disk: {{paths: [{small_fs.path}]}}
        """,
    )
    rigs.append(rig)
    for percent in (30, 40, 50, 60, 70):  # five samples within one hour
        small_fs.fill_to(percent)
        [sample] = rig.round(minutes=5)
    assert sample.metrics["used_percent"] == pytest.approx(70, abs=0.1)

    audit = build_audit(rig.store, rig.config, since=timedelta(days=1), now=rig.clock())
    [disk] = audit.servers[0].disks
    assert round(disk.used_percent or 0, 1) == 70.0  # not the hour's mean, about 50%
    assert disk.used_percent == sample.metrics["used_percent"]
    assert isinstance(disk.free_bytes, int) and isinstance(disk.size_bytes, int)
    assert disk.free_bytes == sample.metrics["free_bytes"]
    figures = audit.to_dict()["servers"][0]["disks"][0]
    assert isinstance(figures["free_bytes"], int) and not math.isnan(figures["used_percent"])


@pytest.fixture
def mdm() -> Iterator[MdmServer]:
    server = MdmServer().start()
    yield server
    server.stop()


def test_a_recovered_device_resolves_under_a_longer_resolve_after(
    tmp_path: Path, mdm: MdmServer, rigs: list[Rig]
) -> None:
    devices = fleet(20, 1)  # one device stale: 5%, no fleet incident
    serve_linked(mdm, devices)
    rig = Rig(
        tmp_path,
        f"""
        site: acme
        state: watcher.db
        listen: null
        defaults: {{resolve_after: 12}}
        targets:
          - name: mdm
            probes:
              - agent_checkins:
                  url: "{mdm.url_for("/api/devices")}"
                  list_path: data.devices
                  fields: {{id: udid, name: info.name, last_checkin: last_seen}}
                  pagination: {{next_path: links.next}}
                  stale_after: 24h
                  per_device: true
        """,
    )
    rigs.append(rig)
    rig.rounds(2)
    [stale] = rig.incidents()
    assert (stale.state, stale.rule) == ("open", "agent-device-stale")

    devices[0] = device(0, age=timedelta(minutes=2))
    serve_linked(mdm, devices)
    rig.rounds(11)
    assert [i.state for i in rig.incidents()] == ["open"]  # 11 clear results: not yet
    rig.rounds(6)
    assert [i.state for i in rig.incidents()] == ["resolved"]
    cleared = [r for r in rig.round() if r.labels.get("scope") == "device"]
    assert cleared == []  # reported no longer once resolved
