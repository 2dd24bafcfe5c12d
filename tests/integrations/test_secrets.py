"""Every integration's password, token, key and routing key, set to a distinctive value
and searched for in everything that leaves a running watcher: ticket and page content
(what Request Tracker stored, what the hosted APIs were sent, the mails), log output,
/metrics, the reprs of configs and integrations, and the state file."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.hosted import replies, responses
from tests.integrations.site import Site, site_config, unique_site
from tests.servers.httpd import HTTPTestServer
from tests.servers.rt import RequestTracker
from watcher.app.daemon import configure_logging

pytestmark = pytest.mark.slow

SID = "AC" + "0123456789abcdef" * 2
SECRETS = {
    "JIRA_TOKEN": "JiraTok-Secret-81b2",
    "ZAMMAD_TOKEN": "ZamTok-Secret-c4d5",
    "REDMINE_KEY": "RedKey-Secret-e6f7",
    "PD_KEY": "PDroute-Secret-0a1b2c3d4e5f6a7b8",
    "OG_KEY": "OGkey-Secret-9c8d",
    "TWILIO_TOKEN": "TwTok-Secret-5e4f",
    "WEBHOOK_SECRET": "WhSig-Secret-1c0d",
    "WEBHOOK_HEADER": "WhHdr-Secret-2e3f",
    "SMTP_PASSWORD": "SmtpPw-Secret-77aa",
    "API_TOKEN": "ApiTok-Secret-44bb",
    "APPRISE_TOKEN": "ApprTok-Secret-3a2b",
}
P1_LATER = """
rules:
  - {name: tcp-down, probe: tcp, when: failed, priority: P2, summary: "{target}: SMTP port not answering ({message})"}
  - {name: tcp-down-long, probe: tcp, when: failed, for: 10m, priority: P1, summary: "{target}: SMTP down for 10 minutes ({message})"}
"""


def config_text(rt: RequestTracker, hooks: HTTPTestServer, smtp_port: int) -> str:
    tickets = [
        {"request_tracker": {"url": rt.url, "token": "${RT_TOKEN}", "queue": rt.queue}},
        {
            "jira": {
                "url": "https://acme.atlassian.net",
                "project": "OPS",
                "user": "w@acme.example",
                "token": "${JIRA_TOKEN}",
            }
        },
        {
            "zammad": {
                "url": "https://hd.acme.example",
                "token": "${ZAMMAD_TOKEN}",
                "customer": "m@acme.example",
            }
        },
        {
            "redmine": {
                "url": "https://rm.acme.example",
                "api_key": "${REDMINE_KEY}",
                "project": "ops",
                "fingerprint_field_id": 4,
            }
        },
        {
            "webhook": {
                "url": f"{hooks.url}/tickets",
                "secret": "${WEBHOOK_SECRET}",
                "headers": {"X-Auth": "${WEBHOOK_HEADER}"},
            }
        },
        {"email": {"to": ["helpdesk@acme.example"]}},
    ]
    paging = [
        {"pagerduty": {"routing_key": "${PD_KEY}"}},
        {"opsgenie": {"api_key": "${OG_KEY}"}},
        {"twilio": {"account_sid": SID, "auth_token": "${TWILIO_TOKEN}", "from": "+14155550100"}},
        {"apprise": {"urls": [f"json://127.0.0.1:{hooks.port}/hooks/${{APPRISE_TOKEN}}"]}},
        {"email": {"to": "hotline"}},
    ]
    body = (
        "  tickets:\n"
        + "\n".join(f"    - {json.dumps(t)}" for t in tickets)
        + "\n  paging:\n"
        + "\n".join(f"    - {json.dumps(p)}" for p in paging)
    )
    extra = f"""
api_token: ${{API_TOKEN}}
smtp: {{host: 127.0.0.1, port: {smtp_port}, user: watcher, password: "${{SMTP_PASSWORD}}", from: watcher@acme.example}}
contacts:
  hotline: [{{name: L2, phone: "+912030458306", email: emergency@support.example}}]
  escalation: [{{role: Senior Product Manager, email: spm@acme.example}}]
"""
    return site_config(unique_site("secrets"), body, extra=extra)


def mock_hosted() -> None:
    jira = "https://acme.atlassian.net/rest/api/2"
    # a service that echoes a credential back in an error: it must not be stored or logged
    responses.add_callback(
        responses.GET,
        f"{jira}/search/jql",
        callback=replies(
            (
                503,
                {"errorMessages": [f"token {SECRETS['JIRA_TOKEN']} rejected by the proxy"]},
                None,
            ),
            (200, {"issues": []}, None),
        ),
    )
    responses.post(f"{jira}/issue", status=201, json={"id": "1", "key": "OPS-1", "self": "x"})
    responses.post(f"{jira}/issue/OPS-1/comment", status=201, json={"id": "2"})
    responses.put(f"{jira}/issue/OPS-1", status=204)
    responses.get(
        f"{jira}/issue/OPS-1/transitions", json={"transitions": [{"id": "31", "name": "Done"}]}
    )
    responses.post(f"{jira}/issue/OPS-1/transitions", status=204)
    zammad = "https://hd.acme.example/api/v1"
    responses.get(f"{zammad}/tickets/search", json=[])
    responses.post(f"{zammad}/tickets", status=201, json={"id": 19})
    responses.post(f"{zammad}/ticket_articles", status=201, json={"id": 20})
    responses.put(f"{zammad}/tickets/19", json={"id": 19})
    responses.get("https://rm.acme.example/issues.json", json={"issues": []})
    issue: dict[str, Any] = {"id": 42}

    def redmine_write(request: Any) -> tuple[int, dict[str, str], str]:
        # Redmine keeps what it was sent; watcher reads status and priority changes back
        fields = json.loads(request.body)["issue"]
        issue.update({k: fields[k] for k in ("custom_fields",) if k in fields})
        issue.update(
            {k[:-3]: {"id": fields[k]} for k in ("status_id", "priority_id") if k in fields}
        )
        return (
            (201, {}, json.dumps({"issue": issue})) if request.method == "POST" else (204, {}, "")
        )

    responses.add_callback(responses.POST, "https://rm.acme.example/issues.json", redmine_write)
    responses.add_callback(responses.PUT, "https://rm.acme.example/issues/42.json", redmine_write)
    responses.add_callback(
        responses.GET,
        "https://rm.acme.example/issues/42.json",
        lambda _request: (200, {}, json.dumps({"issue": issue})),
    )
    responses.add_callback(
        responses.POST,
        "https://events.pagerduty.com/v2/enqueue",
        callback=replies(
            (
                400,
                {"status": "invalid event", "message": f"routing key {SECRETS['PD_KEY']} unknown"},
                None,
            ),
            (202, {"status": "success", "message": "Event processed"}, None),
        ),
    )
    responses.add(
        responses.Response(
            "POST",
            re.compile(r"https://api\.opsgenie\.com/v2/alerts.*"),
            status=202,
            json={"result": "Request will be processed", "requestId": "r"},
        )
    )
    twilio = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
    responses.post(f"{twilio}/Messages.json", status=201, json={"sid": "SM1"})
    responses.post(f"{twilio}/Calls.json", status=201, json={"sid": "CA1"})
    responses.add_passthru("http://127.0.0.1")


@responses.activate
def test_no_secret_leaves_the_watcher(
    tmp_path: Path,
    request_tracker: RequestTracker,
    http_server: HTTPTestServer,
    smtp_sink_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = request_tracker
    secrets = {**SECRETS, "RT_TOKEN": rt.token}
    sink = smtp_sink_factory(auth=("watcher", SECRETS["SMTP_PASSWORD"]), auth_require_tls=False)
    mock_hosted()
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    configure_logging("debug")  # the daemon's own handler and formatter, writing to stderr
    site = Site(tmp_path, config_text(rt, http_server, sink.port), environ=secrets, rules=P1_LATER)
    try:
        for _ in range(11):  # a P2 ticket, then a P1: priority raised, paged
            site.smtp_refused(evidence="220 mail1 ESMTP\n535 5.7.8 authentication failed")
            site.tick()
            site.deliver()
            site.advance(minutes=1)
        site.advance(minutes=30)  # repaged, then past the response deadline: escalated
        site.tick()
        site.deliver()
        site.advance(hours=2)
        site.tick()
        site.deliver()
        site.engine.acknowledge(site.incident().id, by="asha", source="api")
        site.smtp_ok()
        site.smtp_ok()
        site.advance(minutes=20)
        site.deliver()
        assert site.incident().state == "resolved"
        states = {r.state for r in site.store.outbox()}
        assert states <= {"done", "failed"}, site.actions(states=["pending"])
        assert [r.integration for r in site.store.outbox(states=["failed"])] == [
            "paging/pagerduty"
        ]  # its echoed 400

        places: dict[str, str] = {}
        fingerprint = site.incident().fingerprint
        (ticket,) = rt.tickets(f"CF.{{{rt.cf_name}}} = '{fingerprint}'")
        places["RT ticket"] = json.dumps(rt.ticket(int(ticket["id"]))) + "\n".join(
            rt.comments(int(ticket["id"]), types=("Create", "Comment", "Correspond"))
        )
        for call in responses.calls:
            body = call.request.body or b""
            text = body.decode() if isinstance(body, bytes) else str(body)
            if "events.pagerduty.com" in call.request.url:
                event = json.loads(text)
                event.pop("routing_key")  # the one place PagerDuty takes it
                text = json.dumps(event)
            places[f"request to {call.request.url}"] = text
        places["webhook and apprise requests"] = "\n".join(
            r.body.decode() for r in http_server.requests
        )
        places["mails"] = "\n".join(m.raw.decode(errors="replace") for m in sink.messages)
        places["log output"] = capsys.readouterr().err
        places["/metrics"] = site.metrics.exposition().decode()
        places["reprs"] = "\n".join(
            [
                repr(site.config.model),
                str(site.config.model),
                str(site.config.model.model_dump()),
                *(repr(i) + repr(i.config) + str(i.config) for i in site.integrations.values()),
            ]
        )
        site.store.close()
        places["state file"] = "".join(
            p.read_bytes().decode("latin-1") for p in tmp_path.glob("state.db*")
        )
        site.store = type(site.store)(site.config.state_path)

        assert (
            len(sink.messages) >= 3
            and len(http_server.requests) >= 4
            and len(responses.calls) >= 20
        )
        assert "authentication failed" in places["RT ticket"]  # the evidence is there ...
        assert "pagerduty" in places["log output"] and "retrying" in places["log output"]
        for name, value in secrets.items():
            for place, text in places.items():
                assert value not in text, f"{name} found in {place}"
    finally:
        site.close()
        root = logging.getLogger()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
