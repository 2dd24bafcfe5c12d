"""Faults of the redmine integration that only a real Redmine shows: its "Resolved" is
not a closed status, and it drops a change the API user's workflow forbids while still
answering 204."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.test_redmine_real import NAME, make_site
from tests.servers.redmine import Redmine

pytestmark = pytest.mark.slow


def test_a_new_incident_after_the_reopen_window_gets_a_new_issue_not_the_resolved_one(
    tmp_path: Path, redmine: Redmine
) -> None:
    rm = redmine
    s = make_site(tmp_path, rm)
    try:
        s.smtp_refused()
        s.deliver()
        fingerprint = s.incident().fingerprint
        (old,) = rm.issues(fingerprint)
        s.recover()
        assert s.incident().state == "resolved"
        assert rm.issue(old["id"])["status"]["name"] == "Resolved"
        s.advance(hours=3)  # past reopen_within (1h): a new incident, same fingerprint
        s.smtp_refused()
        s.deliver()
        incidents = [i for i in s.engine.incidents() if i.target == "mail1"]
        assert len(incidents) == 1 and incidents[0].state == "open"
        issues = rm.issues(fingerprint)
        assert [i["id"] for i in issues][0] == old["id"] and len(issues) == 2
        new = issues[1]
        assert new["status"]["name"] == "New"
        assert s.store.ticket(incidents[0].id, NAME)[0] == str(new["id"])
        assert s.metrics.tickets_adopted.labels(NAME)._value.get() == 0
    finally:
        s.close()


def test_a_reopen_the_workflow_forbids_fails_loudly_instead_of_leaving_the_issue_resolved(
    tmp_path: Path, redmine: Redmine
) -> None:
    rm = redmine
    # A non-admin API user with the stock Developer role: Resolved -> New is not in its
    # workflow, so Redmine keeps the status, adds the note and answers 204.
    s = make_site(tmp_path, rm, key=rm.bot_key)
    try:
        s.smtp_refused()
        s.deliver()
        (issue,) = rm.issues(s.incident().fingerprint)
        s.recover()
        assert s.incident().state == "resolved"  # New -> Resolved is allowed
        assert rm.issue(issue["id"])["status"]["name"] == "Resolved"
        s.advance(minutes=20)
        s.smtp_refused(message="connection timed out")
        s.deliver()
        (row,) = [r for r in s.store.outbox() if r.action == "reopen"]
        assert row.state == "failed", "a reopen Redmine ignored must not count as delivered"
        assert f"issue {issue['id']} kept status 'Resolved'" in (row.last_error or "")
        assert "workflow" in (row.last_error or "")
        assert s.metrics.outbox_failures.labels(NAME, "permanent")._value.get() == 1
    finally:
        s.close()
