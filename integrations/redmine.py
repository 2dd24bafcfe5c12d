"""``redmine``: issues in Redmine through its REST API (enable it under Administration,
Settings, API).

The fingerprint goes into a text custom field (``fingerprint_field_id``; tick "Used as
a filter" on it, or Redmine ignores the ``cf_`` filter that ``find()`` searches with).
Updates are notes. Resolve and reopen set the issue's status by id; priorities map to
priority ids or names (names are looked up once in the priority enumeration).

Redmine's stock "Resolved" status is not a closed one, so ``find()`` skips issues at
``resolved_status_id`` itself: a resolved issue is history, never adopted. A change the
API user's role may not make (a workflow without Resolved -> New, no permission to edit
the priority) is dropped by Redmine without an error; watcher reads the issue back after
such a change and reports it as a permanent error instead of believing it.

    - redmine:
        url: https://redmine.acme.example
        api_key: ${REDMINE_KEY}
        project: ops
        fingerprint_field_id: 4
        priorities: {P1: Urgent, P2: High, P3: Normal, P4: Low}   # or ids: {P1: 4, ...}
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from integrations.base import (
    Integration,
    PermanentError,
    TicketContent,
    TicketRef,
    TicketStatus,
)
from integrations.rest import HelpdeskConfig, call, json_of, mapped_priority, session_for
from watcher.core.secret import Secret

__all__ = ["RedmineConfig", "RedmineIntegration"]

log = logging.getLogger("watcher.integrations.redmine")

# Redmine's default enumeration: 1 Low, 2 Normal, 3 High, 4 Urgent, 5 Immediate
DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}


class RedmineConfig(HelpdeskConfig):
    api_key: Secret
    project: str
    fingerprint_field_id: int
    tracker_id: int | None = None
    new_status_id: int = 1  # New
    resolved_status_id: int = 3  # Resolved
    reopen_status_id: int = 1  # back to New: someone moving it on acknowledges
    private_notes: bool = False


class RedmineIntegration(Integration):
    kind = "redmine"
    Config = RedmineConfig
    roles = frozenset({"tickets"})
    config: RedmineConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        self._session.headers["X-Redmine-API-Key"] = self.config.api_key.reveal()
        self._session.headers["Accept"] = "application/json"
        self._priorities: dict[str, int] | None = None

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = call(
            self._session, method, self.config.url + path, f"Redmine {self.name}: {what}", **kwargs
        )
        return (
            json_of(response, f"Redmine {self.name}: {what}") if response.content.strip() else None
        )

    def _url(self, issue_id: str) -> str:
        return f"{self.config.url}/issues/{issue_id}"

    def _priority(self, ticket: TicketContent) -> int:
        value = mapped_priority(self.config.priorities, DEFAULT_PRIORITIES, ticket.priority)
        if isinstance(value, int) or str(value).strip().isdigit():
            return int(value)
        ids = self._priority_ids()
        found = ids.get(str(value).strip().casefold())
        if found is None:
            known = ", ".join(sorted(ids)) or "none"
            raise PermanentError(
                f"Redmine {self.name}: no issue priority named {value!r} (Redmine has: {known})"
            )
        return found

    def _priority_ids(self) -> dict[str, int]:
        """Redmine's issue priorities by lower-cased name, asked once."""
        if self._priorities is None:
            answer = self._call(
                "GET", "/enumerations/issue_priorities.json", "list issue priorities"
            )
            self._priorities = {
                str(p.get("name", "")).casefold(): int(p["id"])
                for p in (answer or {}).get("issue_priorities") or []
                if p.get("id") is not None
            }
        return self._priorities

    def open(self, ticket: TicketContent) -> TicketRef:
        issue: dict[str, Any] = {
            "project_id": self.config.project,
            "subject": " ".join(ticket.subject.split())[:255],
            "description": ticket.body,
            "priority_id": self._priority(ticket),
            "custom_fields": [
                {"id": self.config.fingerprint_field_id, "value": ticket.fingerprint}
            ],
        }
        if self.config.tracker_id is not None:
            issue["tracker_id"] = self.config.tracker_id
        answer = self._call("POST", "/issues.json", "create issue", json={"issue": issue}) or {}
        created = answer.get("issue") or {}
        issue_id = str(created.get("id") or "")
        if not issue_id:
            raise PermanentError(
                f"Redmine {self.name}: create answered without an issue id: {answer!r}"[:300]
            )
        if _field_value(created, self.config.fingerprint_field_id) != ticket.fingerprint:
            # Redmine drops a custom field that is not enabled for the project or tracker
            # without a word; the issue exists, but a restart could not find it again.
            log.error(
                "Redmine %s: issue %s has no value in custom field %s: enable that field for"
                " project %r and its trackers, or a watcher restarted at the wrong moment"
                " may open a second issue",
                self.name,
                issue_id,
                self.config.fingerprint_field_id,
                self.config.project,
            )
        return TicketRef(id=issue_id, url=self._url(issue_id))

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str, text: str) -> None:
        changes = dict(fields)
        if text:
            fields["notes"] = text
            fields["private_notes"] = self.config.private_notes
        self._call("PUT", f"/issues/{ref.id}.json", what, json={"issue": fields})
        if changes:
            self._check_applied(ref, changes, what)

    def _check_applied(self, ref: TicketRef, changes: dict[str, Any], what: str) -> None:
        """Redmine answers 204 even when the role's workflow or permissions made it drop a
        field; read the issue back so such a change fails loudly instead of silently."""
        issue = (self._call("GET", f"/issues/{ref.id}.json", f"{what} (check)") or {}).get(
            "issue"
        ) or {}
        for field, wanted in changes.items():
            current = issue.get(field.removesuffix("_id")) or {}
            if isinstance(current, dict) and current.get("id") == wanted:
                continue
            name = current.get("name", current) if isinstance(current, dict) else current
            raise PermanentError(
                f"Redmine {self.name}: issue {ref.id} kept {field.removesuffix('_id')} "
                f"{name!r} instead of id {wanted}: the API user's role may not make that "
                "change (its workflow or permissions); the note was added"
            )

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {}, "add note", ticket.text or ticket.body)

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {"priority_id": self._priority(ticket)}, "set priority", ticket.text)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {"status_id": self.config.resolved_status_id}, "resolve", ticket.text)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        fields = {"status_id": self.config.reopen_status_id, "priority_id": self._priority(ticket)}
        self._update(ref, fields, "reopen", ticket.text)

    def find(self, fingerprint: str) -> TicketRef | None:
        params = urllib.parse.urlencode(
            {
                "project_id": self.config.project,
                "status_id": "open",
                f"cf_{self.config.fingerprint_field_id}": fingerprint,
                "sort": "id",
                "limit": 25,
            }
        )
        answer = self._call("GET", f"/issues.json?{params}", "search issues") or {}
        issues = answer.get("issues") or []
        matching = [
            i for i in issues if _field_value(i, self.config.fingerprint_field_id) == fingerprint
        ]
        if len(matching) < len(issues):
            # Redmine ignores a cf_ filter on a field not "Used as a filter" and lists every
            # open issue: the one wanted may be past the first page.
            log.error(
                'Redmine %s: the search on custom field %s was ignored: tick "Used as a'
                ' filter" on that field, or a restarted watcher may open a second issue',
                self.name,
                self.config.fingerprint_field_id,
            )
        for issue in matching:
            if (issue.get("status") or {}).get("id") == self.config.resolved_status_id:
                continue  # "open" to Redmine, but watcher resolved it: not this incident's
            issue_id = str(issue["id"])
            return TicketRef(id=issue_id, url=self._url(issue_id))
        return None

    def status(self, ref: TicketRef) -> TicketStatus | None:
        issue = (self._call("GET", f"/issues/{ref.id}.json", "read issue") or {}).get("issue") or {}
        status = issue.get("status") or {}
        status_id = status.get("id")
        assignee = issue.get("assigned_to") or None
        owner = (
            str(assignee.get("name") or assignee.get("id")) if isinstance(assignee, dict) else None
        )
        if status.get("is_closed") or status_id == self.config.resolved_status_id:
            state = "resolved"
        elif status_id == self.config.new_status_id:
            state = "new"
        else:
            state = "open"
        return TicketStatus(state=state, taken=owner is not None, owner=owner)  # type: ignore[arg-type]

    def close(self) -> None:
        self._session.close()


def _field_value(issue: dict[str, Any], field_id: int) -> Any:
    for field in issue.get("custom_fields") or []:
        if str(field.get("id")) == str(field_id):
            return field.get("value")
    return None
