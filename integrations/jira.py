"""``jira``: issues in Jira Cloud or Jira Data Center through REST API v2.

The fingerprint goes into a label (default) or a text custom field, so ``find()`` can
look the issue up with JQL after a crash. Updates are comments; resolve and reopen run
workflow transitions chosen by name, the first of the configured names the issue
offers (workflows name them differently: "Done", "Resolve Issue", "Reopen", "To Do").

    - jira:
        url: https://acme.atlassian.net
        project: OPS
        user: watcher@acme.example          # Cloud: account email; Data Center: user name
        token: ${JIRA_TOKEN}                # Cloud API token; Data Center: a personal
                                            # access token (leave user: out) or password
        priorities: {P1: Highest, P2: High, P3: Medium, P4: Low}

Cloud searches with ``/rest/api/2/search/jql`` (the old ``/search`` is gone there),
Data Center with ``/rest/api/2/search``; ``deployment`` is guessed from the host.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Literal

from pydantic import field_validator

from integrations.base import (
    Integration,
    PermanentError,
    TicketContent,
    TicketRef,
    TicketState,
    TicketStatus,
)
from integrations.rest import HelpdeskConfig, call, json_of, mapped_priority, session_for
from watcher.core.secret import Secret, protect_basic_auth

__all__ = ["JiraConfig", "JiraIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {
    "P1": "Highest",
    "P2": "High",
    "P3": "Medium",
    "P4": "Low",
}
SUMMARY_MAX = 255
DESCRIPTION_MAX = 32000  # Jira refuses text fields over 32767 characters
CATEGORY: dict[str, TicketState] = {"new": "new", "indeterminate": "open", "done": "resolved"}


class JiraConfig(HelpdeskConfig):
    project: str
    issue_type: str = "Task"
    user: str | None = None
    token: Secret
    deployment: Literal["cloud", "datacenter"] | None = None
    labels: list[str] = ["watcher"]
    fingerprint_field: str | None = None  # e.g. customfield_10050; the default is a label
    resolve_transitions: list[str] = ["Done", "Resolve Issue", "Resolve", "Close Issue", "Closed"]
    reopen_transitions: list[str] = ["Reopen", "Reopen Issue", "To Do", "Open"]

    @field_validator("fingerprint_field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"customfield_\d+", value):
            raise ValueError("write the field's id, like customfield_10050 (see /rest/api/2/field)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label or any(c.isspace() for c in label):
                raise ValueError(f"{label!r}: Jira labels cannot contain spaces")
        return value

    @property
    def is_cloud(self) -> bool:
        if self.deployment is not None:
            return self.deployment == "cloud"
        host = urllib.parse.urlsplit(self.url).hostname or ""
        return host.endswith((".atlassian.net", ".jira.com"))


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n[... cut by watcher]"


class JiraIntegration(Integration):
    kind = "jira"
    Config = JiraConfig
    roles = frozenset({"tickets"})
    config: JiraConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        if self.config.user:
            self._session.auth = (self.config.user, self.config.token.reveal())
            protect_basic_auth(self.config.user, self.config.token.reveal())
        else:
            self._session.headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        self._session.headers["Accept"] = "application/json"
        self._api = f"{self.config.url}/rest/api/2"

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = call(
            self._session, method, self._api + path, f"Jira {self.name}: {what}", **kwargs
        )
        return json_of(response, f"Jira {self.name}: {what}") if response.content else None

    def _url(self, key: str) -> str:
        return f"{self.config.url}/browse/{key}"

    def _priority(self, ticket: TicketContent) -> dict[str, str]:
        value = mapped_priority(self.config.priorities, DEFAULT_PRIORITIES, ticket.priority)
        return {"id": str(value)} if isinstance(value, int) else {"name": value}

    def open(self, ticket: TicketContent) -> TicketRef:
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": _cut(" ".join(ticket.subject.split()), SUMMARY_MAX),
            "description": _cut(ticket.body, DESCRIPTION_MAX),
            "priority": self._priority(ticket),
            "labels": list(self.config.labels),
        }
        if self.config.fingerprint_field:
            fields[self.config.fingerprint_field] = ticket.fingerprint
        else:
            fields["labels"].append(ticket.fingerprint)
        answer = self._call("POST", "/issue", "create issue", json={"fields": fields}) or {}
        key = answer.get("key")
        if not key:
            raise PermanentError(
                f"Jira {self.name}: create answered without an issue key: {answer!r}"[:300]
            )
        return TicketRef(id=str(key), url=self._url(str(key)))

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._comment(ref, ticket.text or ticket.body)

    def _comment(self, ref: TicketRef, text: str) -> None:
        self._call(
            "POST",
            f"/issue/{ref.id}/comment",
            "comment",
            json={"body": _cut(text, DESCRIPTION_MAX)},
        )

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._call(
            "PUT",
            f"/issue/{ref.id}",
            "set priority",
            json={"fields": {"priority": self._priority(ticket)}},
        )
        if ticket.text:
            self._comment(ref, ticket.text)

    def _transition(self, ref: TicketRef, names: list[str], what: str) -> None:
        answer = (
            self._call("GET", f"/issue/{ref.id}/transitions", f"list transitions to {what}") or {}
        )
        offered = answer.get("transitions") or []
        wanted = [n.casefold() for n in names]
        for name in wanted:
            for transition in offered:
                if name in (
                    str(transition.get("name", "")).casefold(),
                    str((transition.get("to") or {}).get("name", "")).casefold(),
                ):
                    self._call(
                        "POST",
                        f"/issue/{ref.id}/transitions",
                        what,
                        json={"transition": {"id": transition["id"]}},
                    )
                    return
        available = ", ".join(str(t.get("name")) for t in offered) or "none"
        raise PermanentError(
            f"Jira {self.name}: issue {ref.id} offers no transition named {' or '.join(names)} to {what}"
            f" (it offers: {available}); set {'resolve' if what == 'resolve' else 'reopen'}_transitions"
        )

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        if ticket.text:
            self._comment(ref, ticket.text)
        self._transition(ref, self.config.resolve_transitions, "resolve")

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._transition(ref, self.config.reopen_transitions, "reopen")
        self._call(
            "PUT",
            f"/issue/{ref.id}",
            "set priority",
            json={"fields": {"priority": self._priority(ticket)}},
        )
        if ticket.text:
            self._comment(ref, ticket.text)

    def find(self, fingerprint: str) -> TicketRef | None:
        if self.config.fingerprint_field:
            number = self.config.fingerprint_field.removeprefix("customfield_")
            match = f"cf[{number}] ~ {_jql_string(fingerprint)}"
        else:
            match = f"labels = {_jql_string(fingerprint)}"
        jql = f"project = {_jql_string(self.config.project)} AND {match} AND statusCategory != Done ORDER BY created ASC"
        path = "/search/jql" if self.config.is_cloud else "/search"
        params = urllib.parse.urlencode({"jql": jql, "fields": "status", "maxResults": 5})
        answer = self._call("GET", f"{path}?{params}", "search issues") or {}
        issues = answer.get("issues") or []
        if not issues:
            return None
        key = str(issues[0].get("key") or issues[0].get("id"))
        return TicketRef(id=key, url=self._url(key))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        answer = self._call("GET", f"/issue/{ref.id}?fields=status,assignee", "read issue") or {}
        fields = answer.get("fields") or {}
        category = ((fields.get("status") or {}).get("statusCategory") or {}).get("key", "")
        assignee = fields.get("assignee") or None
        owner = None
        if isinstance(assignee, dict):
            owner = str(
                assignee.get("displayName")
                or assignee.get("name")
                or assignee.get("accountId")
                or "someone"
            )
        return TicketStatus(
            state=CATEGORY.get(category, "other"), taken=owner is not None, owner=owner
        )

    def close(self) -> None:
        self._session.close()
