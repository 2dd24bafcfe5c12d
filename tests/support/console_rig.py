"""A running watcher with the console, real targets on loopback (one failing into a P1),
and a real webhook receiver for its tickets and pages; plus a small cookie-aware client."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from tests.servers.base import free_port, wait_until
from tests.servers.httpd import HTTPTestServer
from tests.support.helpers import write_config
from tests.support.hostile import HOSTILE, LONG
from watcher.app.daemon import App

TOKEN = "console-test-token-4b1d"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Client:
    """HTTP on loopback that keeps the session cookie and never follows redirects."""

    port: int
    cookie: str = ""
    seen: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, fields: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if fields is not None:
            body = urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        raw = conn.getresponse()
        answer = Answer(
            raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read().decode()
        )
        conn.close()
        return answer

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str]) -> Answer:
        return self.request("POST", path, fields)

    def login(self, token: str = TOKEN) -> Answer:
        answer = self.post("/console/login", {"token": token})
        if answer.status == 303:
            self.cookie = answer.headers["set-cookie"].split(";")[0]
        return answer

    def csrf(self, path: str = "/console") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).body)
        assert found, "no CSRF field on the page: not logged in?"
        return found.group(1)


@dataclass
class Console:
    app: App
    port: int
    target: HTTPTestServer
    receiver: HTTPTestServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.port)

    def open_incident(self, target: str | None = None) -> int:
        """The id of an open incident (on ``target``, if named), once there is one."""

        def opened() -> int | None:
            found = [
                i
                for i in self.app.engine.incidents()
                if i.state == "open" and target in (None, i.target)
            ]
            return found[0].id if found else None

        return wait_until(opened, 30, "the failing target's incident to open")  # type: ignore[no-any-return]

    def events(self, path: str) -> list[str]:
        return [json.loads(r.body)["event"] for r in self.receiver.requests if r.path == path]


def start_console(
    tmp_path: Path, target: HTTPTestServer, receiver: HTTPTestServer, extra: str = ""
) -> Console:
    """intranet is fine; shop lacks the hostile text it must contain, billing answers 500:
    each a P1 after two results."""
    target.set_default(status=200, body="<b>hello</b>")
    target.set_response("/billing", status=500, body="down")
    port = free_port()
    label = json.dumps(HOSTILE + LONG, ensure_ascii=False)
    contains = json.dumps(HOSTILE, ensure_ascii=False)
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        api_token: "{TOKEN}"
        contacts: {{escalation: [{{role: Senior Product Manager, email: spm@support.example}}]}}
        integrations:
          tickets: [{{webhook: {{url: "{receiver.url_for("/ticket")}"}}}}]
          paging: [{{webhook: {{url: "{receiver.url_for("/page")}"}}}}]
        defaults: {{interval: 300ms, timeout: 2s}}
        rules: [default, fast.yml]
        targets:
          - name: shop
            labels: {{role: web, note: {label}}}
            probes:
              - http: {{url: "{target.url_for("/")}", contains: {contains}}}
          - name: intranet
            probes:
              - http: {{url: "{target.url_for("/intranet")}"}}
          - name: billing
            labels: {{role: db}}
            probes:
              - http: {{url: "{target.url_for("/billing")}"}}
        {extra}
        """,
        extra={
            "fast.yml": "rules:\n  - {name: http-down, probe: http, when: failed, after: 2,"
            " priority: P1, summary: '{target}: down ({message})'}\n"
        },
    )
    app = App(config)
    app.start()
    return Console(app, port, target, receiver)
