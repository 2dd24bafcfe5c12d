"""The SSH transport against real OpenSSH servers: pooling, host keys, auth, timeouts, bastions."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from probes.base import TransportError
from probes.command import CommandConfig, CommandProbe
from tests.servers.base import descendants, make_workdir, run, wait_until
from tests.servers.sshd import BastionPair, Sshd, make_client_keys
from tests.support.helpers import config_from
from tests.support.ssh_helpers import new_pool, run_check, settings_for_sshd
from watcher.config.models import ConfigError
from watcher.transports import Runners
from watcher.transports.ssh import HostKeyError, SshPool, SshRunner, fingerprint


@pytest.fixture
def ssh_pool() -> Iterator[SshPool]:
    with new_pool() as pool:
        yield pool


def _writable_dir() -> Path:
    """A directory the unprivileged test login may create files in."""
    path = make_workdir("ssh-marker")
    path.chmod(0o777)
    return path


def _logins(sshd: Sshd) -> int:
    return len(
        re.findall(
            r"Accepted (?:publickey|password) for", sshd.log_path.read_text(errors="replace")
        )
    )


# --------------------------------------------------------------------------- commands


def test_checks_share_one_connection_and_argv_arrives_word_for_word(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    done = runner.run(["printf", "%s|", "two words", "$HOME", "it's", "; touch /tmp/nope"], 10)
    assert done.exit_code == 0
    assert done.stdout == "two words|$HOME|it's|; touch /tmp/nope|"
    for _ in range(5):
        assert runner.run(["true"], 10).exit_code == 0
    assert ssh_pool.connection(runner.connection.settings).connects == 1
    assert _logins(sshd) == 1


def test_a_string_command_runs_through_the_remote_shell_and_reports_exit_and_stderr(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    done = runner.run("echo $((40 + 2)); echo oops >&2; exit 3", 10)
    assert (done.exit_code, done.stdout, done.stderr) == (3, "42\n", "oops\n")


def test_output_is_capped_and_bytes_that_are_not_utf8_are_kept_readable(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    done = runner.run("printf '\\377\\376ok\\n'; head -c 300000 /dev/zero | tr '\\0' x", 10)
    assert done.exit_code == 0
    assert done.stdout.startswith("\\xff\\xfeok\n")
    assert len(done.stdout) <= 64 * 1024 + 16


def test_a_command_past_its_timeout_is_an_error_in_time_and_the_connection_serves_the_next(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    runner.run(["true"], 10)  # connected: the timeout below is the command's alone
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        runner.run(["sleep", "31.5"], 1.0)
    elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert "did not finish within 1.0s" in str(caught.value)
    assert elapsed < 1.0 + 1.0
    assert runner.run(["echo", "next"], 10).stdout == "next\n"
    assert runner.connection.connects == 1
    # sshd was asked to KILL the command, so nothing lingers on the target.
    wait_until(
        lambda: subprocess.run(["pgrep", "-f", "sleep 31.5"], capture_output=True).returncode == 1,
        10,
        "the timed-out sleep to be killed",
    )


def test_a_probe_whose_command_hangs_gives_error_not_fail(sshd: Sshd, ssh_pool: SshPool) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    probe = CommandProbe(CommandConfig(run=["sleep", "30.5"]))
    [result] = run_check(probe, runner, timeout=0.5)
    assert (result.status, result.reason) == ("error", "timeout")
    [result] = run_check(CommandProbe(CommandConfig(run="echo fine")), runner)
    assert result.status == "ok"


def test_checks_beyond_the_channel_cap_wait_their_turn_on_the_same_connection(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd, max_channels=2))
    script = "echo start $(date +%s.%N); sleep 0.4; echo end $(date +%s.%N)"
    outputs: list[str] = []
    errors: list[BaseException] = []

    def check() -> None:
        try:
            outputs.append(runner.run(script, 20).stdout)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(outputs) == 6
    spans = [tuple(float(x) for x in re.findall(r"(?:start|end) (\S+)", out)) for out in outputs]
    busiest = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert busiest <= 2
    assert runner.connection.connects == 1


def test_a_full_channel_cap_is_an_error_once_the_timeout_passes(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd, max_channels=1))
    runner.run(["true"], 10)
    blocker = threading.Thread(target=lambda: runner.run(["sleep", "2"], 10))
    blocker.start()
    wait_until(lambda: runner.connection._busy == 1, 10, "the first command to hold the channel")
    with pytest.raises(TransportError, match="channels stayed busy"):
        runner.run(["true"], 0.3)
    blocker.join(10)


def test_an_idle_connection_is_closed_and_reopened_on_the_next_check(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd, idle_close=0.5))
    runner.run(["true"], 10)
    assert runner.connection.connected
    wait_until(lambda: not runner.connection.connected, 15, "the idle connection to close")
    assert runner.run(["echo", "again"], 10).stdout == "again\n"
    assert runner.connection.connects == 2


# --------------------------------------------------------------------------- a dying server


def test_sshd_killed_gives_errors_then_recovers_after_restart_without_a_new_pool(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    probe = CommandProbe(CommandConfig(run=["echo", "alive"]))
    assert run_check(probe, runner)[0].status == "ok"
    sshd.kill()
    for _ in range(2):
        [result] = run_check(probe, runner)
        assert (result.status, result.reason) == ("error", "unreachable")
        assert "connection refused" in result.message
    sshd.start()
    [result] = run_check(probe, runner)
    assert result.status == "ok", result.message
    assert runner.connection.connects == 2


def test_a_restart_between_checks_is_absorbed_by_one_reconnect(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    runner.run(["true"], 10)
    sshd.restart()
    assert runner.run(["echo", "back"], 10).stdout == "back\n"
    assert runner.connection.connects == 2


def test_killing_only_the_listener_leaves_the_open_connection_working(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    runner.run(["true"], 10)
    sshd.kill(sessions=False)
    assert runner.run(["echo", "still"], 10).stdout == "still\n"


def test_a_frozen_server_costs_one_timeout_and_the_next_check_reconnects(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    runner = ssh_pool.runner(settings_for_sshd(sshd))
    runner.run(["true"], 10)
    frozen = descendants(sshd.pid or 0)  # this connection's sshd processes, not the listener
    assert frozen
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            runner.run(["echo", "hello"], 1.0)
        assert caught.value.reason == "timeout"
        assert time.monotonic() - started < 1.0 + 1.0
        assert runner.run(["echo", "fresh"], 10).stdout == "fresh\n"
        assert runner.connection.connects == 2
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_a_server_that_never_speaks_ssh_is_a_timeout_in_time(ssh_pool: SshPool, sshd: Sshd) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = replace(settings_for_sshd(sshd), port=port, connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            ssh_pool.runner(settings).run(["true"], 5)
    assert caught.value.reason in ("timeout", "unreachable")
    assert "handshake" in str(caught.value) or "banner" in str(caught.value)
    assert time.monotonic() - started < 1.0 + 1.0


def test_a_closed_pool_refuses_new_checks(sshd: Sshd) -> None:
    pool = SshPool(trust_file=None)
    runner = pool.runner(settings_for_sshd(sshd))
    runner.run(["true"], 10)
    pool.close()
    with pytest.raises(TransportError, match="pool was closed"):
        runner.run(["true"], 10)


# --------------------------------------------------------------------------- host keys


def test_a_changed_host_key_is_refused_before_login_and_no_command_runs(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    marker = _writable_dir() / "touched"
    settings = settings_for_sshd(sshd)  # knows the current key
    old = sshd.host_key_fingerprint
    new = sshd.regenerate_host_key()
    logins = _logins(sshd)
    runner = ssh_pool.runner(settings)
    with pytest.raises(HostKeyError) as caught:
        runner.run(["touch", str(marker)], 10)
    assert caught.value.reason == "host_key_changed"
    message = str(caught.value)
    assert "host key CHANGED" in message and old in message and new in message
    assert "No command was sent" in message
    assert not marker.exists()
    assert _logins(sshd) == logins  # refused before authentication: no credential was offered
    # The same command with the right key does create the file: the check above meant something.
    ssh_pool.runner(settings_for_sshd(sshd)).run(["touch", str(marker)], 10)
    assert marker.exists()


def test_a_changed_host_key_is_an_error_result_with_its_own_reason(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    settings = settings_for_sshd(sshd)
    sshd.regenerate_host_key()
    [result] = run_check(CommandProbe(CommandConfig(run=["true"])), ssh_pool.runner(settings))
    assert (result.status, result.reason) == ("error", "host_key_changed")
    assert "host key CHANGED" in result.message


def test_an_unknown_host_is_refused_without_trust_on_first_use(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    marker = _writable_dir() / "touched"
    runner = ssh_pool.runner(settings_for_sshd(sshd, known=False))
    with pytest.raises(HostKeyError) as caught:
        runner.run(["touch", str(marker)], 10)
    assert caught.value.reason == "host_key_unknown"
    assert sshd.host_key_fingerprint in str(caught.value)
    assert "trust_on_first_use" in str(caught.value)
    assert not marker.exists()
    assert _logins(sshd) == 0
    assert ssh_pool.trust_file is not None and not ssh_pool.trust_file.exists()


def test_trust_on_first_use_records_the_key_once_and_then_holds_it_to_it(sshd: Sshd) -> None:
    trust_file = make_workdir("tofu") / "watcher.known_hosts"
    settings = settings_for_sshd(sshd, known=False, trust_on_first_use=True)
    for _restart in range(2):
        pool = SshPool(trust_file=trust_file)
        try:
            assert pool.runner(settings).run(["echo", "hi"], 10).stdout == "hi\n"
        finally:
            pool.close()
    lines = trust_file.read_text().splitlines()
    assert lines == [sshd.known_hosts_line()]
    sshd.regenerate_host_key()
    pool = SshPool(trust_file=trust_file)
    try:
        with pytest.raises(HostKeyError, match="host key CHANGED"):
            pool.runner(settings).run(["true"], 10)
    finally:
        pool.close()
    assert len(trust_file.read_text().splitlines()) == 1


def test_a_pinned_fingerprint_is_enough_and_a_wrong_pin_is_a_changed_key(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    pinned = settings_for_sshd(sshd, known=False, host_key=sshd.host_key_fingerprint)
    assert ssh_pool.runner(pinned).run(["echo", "pinned"], 10).stdout == "pinned\n"
    other_pool = SshPool(trust_file=None)
    wrong = replace(pinned, host_key="SHA256:" + "A" * 43)
    try:
        with pytest.raises(HostKeyError, match="host key CHANGED.*pins SHA256:A{43}"):
            other_pool.runner(wrong).run(["true"], 10)
    finally:
        other_pool.close()


def test_a_revoked_host_key_is_refused_even_where_another_line_or_a_pin_accepts_it(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    settings = settings_for_sshd(sshd)  # its known_hosts lists the key as usual
    _, key_type, key_text = sshd.known_hosts_line().split()
    with open(settings.known_hosts, "a") as fh:
        fh.write(f"@revoked * {key_type} {key_text}\n")
    marker = _writable_dir() / "touched"
    logins = _logins(sshd)
    with pytest.raises(HostKeyError) as caught:
        ssh_pool.runner(settings).run(["touch", str(marker)], 10)
    assert caught.value.reason == "host_key_changed"
    assert "host key REVOKED" in str(caught.value) and "line 2" in str(caught.value)
    pinned = replace(settings, host_key=sshd.host_key_fingerprint)
    with (
        contextlib.closing(SshPool(trust_file=None)) as pool,
        pytest.raises(HostKeyError, match="REVOKED"),
    ):
        pool.runner(pinned).run(["true"], 10)
    assert not marker.exists() and _logins(sshd) == logins
    # the revocation of some other key changes nothing for this host
    other = make_workdir("otherkey") / "key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
    other_key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    settings.known_hosts.write_text(f"{sshd.known_hosts_line()}\n@revoked * {other_key}\n")
    with contextlib.closing(SshPool(trust_file=None)) as pool:
        assert pool.runner(settings).run(["true"], 10).exit_code == 0


def test_hashed_known_hosts_entries_are_understood(sshd: Sshd, ssh_pool: SshPool) -> None:
    settings = settings_for_sshd(sshd)
    run(["ssh-keygen", "-H", "-f", str(settings.known_hosts)])
    assert settings.known_hosts.read_text().startswith("|1|")
    assert ssh_pool.runner(settings).run(["true"], 10).exit_code == 0


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("key", ["ed25519", "ecdsa", "rsa", "ed25519_encrypted"])
def test_each_key_type_logs_in(sshd: Sshd, ssh_pool: SshPool, key: str) -> None:
    from watcher.core.secret import Secret

    passphrase = Secret(sshd.client_keys.passphrase) if key == "ed25519_encrypted" else None
    runner = ssh_pool.runner(settings_for_sshd(sshd, key=key, passphrase=passphrase))
    assert runner.run(["whoami"], 10).stdout.strip() == sshd.user


def test_password_login(sshd: Sshd, ssh_pool: SshPool) -> None:
    from watcher.core.secret import Secret

    runner = ssh_pool.runner(settings_for_sshd(sshd, key_files=(), password=Secret(sshd.password)))
    assert runner.run(["whoami"], 10).stdout.strip() == sshd.user


def test_a_key_the_server_does_not_know_is_an_auth_error(sshd: Sshd, ssh_pool: SshPool) -> None:
    stranger = make_client_keys(make_workdir("stranger-keys"))
    settings = settings_for_sshd(sshd, key_files=(stranger.ed25519,))
    [result] = run_check(CommandProbe(CommandConfig(run=["true"])), ssh_pool.runner(settings))
    assert (result.status, result.reason) == ("error", "auth")
    assert "authentication refused" in result.message and "retrying will not help" in result.message


def test_a_wrong_password_is_an_auth_error_that_never_shows_the_password(
    sshd: Sshd, ssh_pool: SshPool
) -> None:
    from watcher.core.secret import Secret

    settings = settings_for_sshd(sshd, key_files=(), password=Secret("not-the-password-123"))
    [result] = run_check(CommandProbe(CommandConfig(run=["true"])), ssh_pool.runner(settings))
    assert (result.status, result.reason) == ("error", "auth")
    assert "not-the-password-123" not in result.message


@pytest.mark.parametrize(
    ("passphrase", "expected"),
    [(None, "is encrypted: set ssh: passphrase"), ("wrong-one", "wrong passphrase")],
)
def test_an_encrypted_key_without_its_passphrase_says_so(
    sshd: Sshd, ssh_pool: SshPool, passphrase: str | None, expected: str
) -> None:
    from watcher.core.secret import Secret

    settings = settings_for_sshd(
        sshd, key="ed25519_encrypted", passphrase=Secret(passphrase) if passphrase else None
    )
    with pytest.raises(TransportError, match=expected) as caught:
        ssh_pool.runner(settings).run(["true"], 10)
    assert caught.value.reason == "auth"


# --------------------------------------------------------------------------- bastion


def test_a_host_reachable_only_through_the_bastion_is_checked_through_it(
    bastion_pair: BastionPair, ssh_pool: SshPool
) -> None:
    bastion, inner = bastion_pair.bastion, bastion_pair.inner
    hop = settings_for_sshd(bastion, target="jump")
    settings = settings_for_sshd(inner, target="inner", via=hop)
    runner = ssh_pool.runner(settings)
    seen = runner.run("echo $SSH_CONNECTION", 10).stdout.split()
    assert seen[2:] == [inner.host, str(inner.port)]  # the inner sshd answered
    assert runner.run(["echo", "again"], 10).stdout == "again\n"
    assert runner.connection.connects == 1
    assert ssh_pool.connection(hop).connects == 1  # the bastion's one connection carries the tunnel
    if bastion_pair.isolated:
        direct = ssh_pool.runner(replace(settings, via=None, connect_timeout=2.0))
        with pytest.raises(TransportError) as caught:
            direct.run(["true"], 5)
        assert caught.value.reason in ("unreachable", "timeout")


def test_the_host_behind_a_bastion_has_its_key_checked_too(
    bastion_pair: BastionPair, ssh_pool: SshPool
) -> None:
    bastion, inner = bastion_pair.bastion, bastion_pair.inner
    marker = _writable_dir() / "touched"
    settings = settings_for_sshd(
        inner, target="inner", via=settings_for_sshd(bastion, target="jump")
    )
    inner.regenerate_host_key()
    with pytest.raises(HostKeyError, match="host key CHANGED"):
        ssh_pool.runner(settings).run(["touch", str(marker)], 10)
    assert not marker.exists()


def test_a_bastion_that_cannot_reach_the_host_says_so(sshd: Sshd, ssh_pool: SshPool) -> None:
    closed_port = sshd.port
    hop = settings_for_sshd(sshd, target="jump")
    runner = ssh_pool.runner(replace(settings_for_sshd(sshd), target="gone", port=1, via=hop))
    with pytest.raises(TransportError, match="bastion could not reach 127.0.0.1:1") as caught:
        runner.run(["true"], 10)
    assert caught.value.reason == "unreachable"
    assert closed_port == sshd.port


# --------------------------------------------------------------------------- config wiring


def _config(tmp_path: Path, sshd: Sshd, extra_target: str = "", ssh_extra: str = "") -> str:
    sshd.write_known_hosts(tmp_path / "known_hosts")
    return f"""
        site: acme
        state: watcher.db
        listen: null
        ssh:
          user: {sshd.user}
          key_file: {sshd.client_keys.ed25519_encrypted}
          passphrase: "${{KEY_PASSPHRASE}}"
          known_hosts: known_hosts
          {ssh_extra}
        targets:
          - name: box
            host: {sshd.host}
            transport: ssh
            ssh: {{port: {sshd.port}}}
            probes:
              - command: {{run: [echo, from-config]}}
        {extra_target}
    """


def test_a_target_in_watcher_yml_runs_its_probes_over_ssh(tmp_path: Path, sshd: Sshd) -> None:
    config = config_from(
        tmp_path, _config(tmp_path, sshd), environ={"KEY_PASSPHRASE": sshd.client_keys.passphrase}
    )
    runners = Runners(config.model, base_dir=config.base_dir)
    try:
        target = config.targets["box"]
        runner = runners.for_target(target)
        assert isinstance(runner, SshRunner)
        assert runner.connection.settings.known_hosts == tmp_path / "known_hosts"
        assert runners.trust_file == tmp_path / "watcher.known_hosts"
        spec = target.probe_specs()[0]
        [result] = run_check(spec.probe_class(spec.config), runner)
        assert (result.status, result.message) == ("ok", "from-config")
    finally:
        runners.close()


def test_trust_on_first_use_from_watcher_yml_writes_beside_the_state_file(
    tmp_path: Path, sshd: Sshd
) -> None:
    text = _config(tmp_path, sshd, ssh_extra="trust_on_first_use: true").replace(
        "known_hosts: known_hosts", "known_hosts: empty"
    )
    (tmp_path / "empty").write_text("")
    config = config_from(tmp_path, text, environ={"KEY_PASSPHRASE": sshd.client_keys.passphrase})
    runners = Runners(config.model, base_dir=config.base_dir)
    try:
        assert runners.for_target(config.targets["box"]).run(["true"], 10).exit_code == 0
    finally:
        runners.close()
    assert (tmp_path / "watcher.known_hosts").read_text().split()[
        2
    ] == sshd.host_public_key_line.split()[1]


def test_via_in_watcher_yml_tunnels_through_the_other_target(
    tmp_path: Path, bastion_pair: BastionPair
) -> None:
    bastion, inner = bastion_pair.bastion, bastion_pair.inner
    known = tmp_path / "known_hosts"
    known.write_text(bastion.known_hosts_line() + "\n" + inner.known_hosts_line() + "\n")
    config = config_from(
        tmp_path,
        f"""
        site: acme
        listen: null
        ssh: {{user: {bastion.user}, key_file: {bastion.client_keys.ed25519}, known_hosts: {known}}}
        targets:
          - {{name: jump, host: {bastion.host}, transport: ssh, ssh: {{port: {bastion.port}}}}}
          - name: inner
            host: {inner.host}
            via: jump
            ssh: {{port: {inner.port}}}
            probes: [{{command: {{run: "echo $SSH_CONNECTION"}}}}]
        """,
    )
    runners = Runners(config.model, base_dir=config.base_dir)
    try:
        runner = runners.for_target(config.targets["inner"])
        assert runner.run("echo $SSH_CONNECTION", 10).stdout.split()[2:] == [
            inner.host,
            str(inner.port),
        ]
    finally:
        runners.close()


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        (
            "ssh: {user: m, host_key: 'MD5:aa:bb'}\ntargets: [{name: a, host: 127.0.0.11}]",
            "host_key is a fingerprint like SHA256:",
        ),
        (
            "ssh: {user: m}\ntargets: [{name: a, host: 127.0.0.11, via: b}, {name: b, host: 127.0.0.12, via: a}]",
            "via: loops: a -> b -> a",
        ),
        (
            "ssh: {user: m}\ntargets: [{name: a, host: 127.0.0.11, via: b}, {name: b}]",
            "'b' is not reached over SSH",
        ),
        (
            "ssh: {user: m}\ntargets: [{name: a, host: 127.0.0.11, via: nope}]",
            "via names no target: 'nope'",
        ),
        ("ssh: {user: m, max_channels: 0}\ntargets: []", "ssh.max_channels"),
    ],
)
def test_ssh_settings_that_cannot_work_are_refused_at_load(
    tmp_path: Path, snippet: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(tmp_path, f"site: acme\nlisten: null\n{snippet}\n")
    assert problem in str(caught.value)


def test_the_fingerprint_matches_what_ssh_keygen_prints(sshd: Sshd) -> None:
    printed = run(["ssh-keygen", "-lf", f"{sshd.host_key_path}.pub"]).stdout.split()[1]
    assert fingerprint(sshd.host_key) == printed == sshd.host_key_fingerprint


def test_no_thread_or_descriptor_outlives_a_closed_pool(sshd: Sshd) -> None:
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    pool = SshPool(trust_file=None)
    runner = pool.runner(settings_for_sshd(sshd))
    for _ in range(20):
        runner.run(["true"], 10)
    pool.close()
    assert not runner.connection.connected
    wait_until(
        lambda: threading.active_count() <= threads_before,
        10,
        "the transport and idle threads to end",
    )
    wait_until(
        lambda: len(os.listdir("/proc/self/fd")) <= fds_before, 10, "descriptors to be released"
    )
