"""The mail_queue probe against a real Postfix queue, and the Exim and Sendmail listings."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest

from probes.mail_queue import MailQueueConfig, MailQueueProbe, parse_exim, parse_sendmail
from tests.servers.base import wait_until
from tests.servers.mail import MailServer
from tests.support.ssh_helpers import run_check, runner_for
from watcher.transports.local import LocalRunner


@pytest.mark.slow
def test_deferred_mail_in_a_real_postfix_queue_is_counted_and_aged(
    fresh_mail_server: MailServer,
) -> None:
    server = fresh_mail_server
    probe = MailQueueProbe(MailQueueConfig(config_dir=str(server.postfix_dir)))
    [empty] = run_check(probe, LocalRunner())
    assert (empty.status, empty.metrics["queued"], empty.message) == (
        "ok",
        0,
        "postfix queue empty",
    )
    server.break_delivery()
    for n in range(3):
        server.send(subject=f"stuck {n}")
    wait_until(lambda: server.queued() >= 3, 15, "three messages in the queue")
    [result] = run_check(probe, LocalRunner())
    assert result.status == "ok", result.message
    assert result.metrics["queued"] == 3
    assert (
        result.metrics["deferred"] + result.metrics["active"] + result.metrics.get("incoming", 0)
        == 3
    )
    assert 0 <= result.metrics["oldest_age_s"] < 600
    assert "3 messages in the postfix queue" in result.message
    assert server.address in result.evidence
    # The same queue in the sendmail-style listing (postqueue -p), as older tools print it.
    listing = subprocess.run(
        ["postqueue", "-c", str(server.postfix_dir), "-p"], capture_output=True, text=True
    ).stdout
    report = parse_sendmail(listing, datetime.now().astimezone())
    assert report.queued == 3 and 0 <= report.oldest_age_s < 600


@pytest.mark.slow
def test_a_queue_the_login_may_not_list_is_an_error_over_ssh(
    fresh_mail_server: MailServer, sshd_factory
) -> None:  # type: ignore[no-untyped-def]
    # Postfix lets an unprivileged user list only its default instance (or ones named in
    # alternate_config_directories); the test instance is neither, so postqueue refuses.
    probe = MailQueueProbe(MailQueueConfig(config_dir=str(fresh_mail_server.postfix_dir)))
    with runner_for("ssh", sshd_factory) as runner:
        [result] = run_check(probe, runner)
    assert result.status == "error"
    assert "postqueue exited" in result.message
    assert "alternate_config_directories" in result.evidence


def test_a_missing_mta_is_an_error_that_says_so(sshd_factory) -> None:  # type: ignore[no-untyped-def]
    probe = MailQueueProbe(MailQueueConfig(mta="exim", command=["watcher-no-such-mailq"]))
    with runner_for("ssh", sshd_factory) as runner:
        [result] = run_check(probe, runner)
    assert result.status == "error"
    assert "watcher-no-such-mailq exited 127 (not installed?)" in result.message


EXIM_BP = """\
25m  2.9K 1i7Pnk-0003Uw-5L <alice@example.com>
          bob@example.com

 4h  1.2K 1i7Pnk-0003Uw-5M <> *** frozen ***
          bob@example.com

 2d   734 1i7Qaa-0004Xz-Q1 <cron@host.example.com>
          D root@host.example.com
          ops@example.com
"""

SENDMAIL_MAILQ = """\
\t\t/var/spool/mqueue (2 requests)
-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
x9N1a2b3004567*     123 Mon Oct 23 01:36 <root@host.example.com>
                 (Deferred: Connection refused by mx.example.com.)
                                         <user@example.com>
x9MLZ0Yq003210     4567 Sun Oct 22 23:00 <www-data@host.example.com>
                                         <other@example.com>
\t\tTotal requests: 2
"""


def test_exim_listing_counts_messages_ages_the_oldest_and_frozen() -> None:
    report = parse_exim(EXIM_BP)
    assert (report.queued, report.oldest_age_s, report.counts) == (3, 2 * 86400, {"frozen": 1})
    assert parse_exim("").queued == 0


def test_sendmail_listing_is_aged_by_the_target_clock_across_new_year() -> None:
    now = datetime(2026, 10, 23, 3, 36, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    report = parse_sendmail(SENDMAIL_MAILQ, now)
    assert report.queued == 2
    assert report.oldest_age_s == (4 * 3600 + 36 * 60)
    january = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    december = parse_sendmail("x9N1a2b3004567    123 Thu Dec 31 23:30 <a@b>\n", january)
    assert december.oldest_age_s == 3600
