"""twilio against the documented Messages and Calls resources (2010-04-01 API, ``responses``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from integrations.base import PermanentError, TransientError
from tests.integrations.hosted import build, content, form_of, replies, responses
from tests.integrations.site import Site, site_config, unique_site

SID = "AC" + "0123456789abcdef" * 2
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
MESSAGE = {
    "sid": "SM" + "f" * 32,
    "status": "queued",
    "account_sid": SID,
    "to": "+912030458306",
    "from": "+14155550100",
}
CALL = {"sid": "CA" + "e" * 32, "status": "queued", "account_sid": SID}


def twilio(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    options = {"account_sid": SID, "auth_token": "${TWILIO_TOKEN}", "from": "+14155550100", **extra}
    return build(
        tmp_path, "twilio", options, role="paging", environ={"TWILIO_TOKEN": "twilio-auth-token-55"}
    )


@responses.activate
def test_a_p2_page_texts_every_hotline_phone(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Messages.json", status=201, json=MESSAGE)
    twilio(tmp_path).page(content(priority="P2", text="Repage 2: still unacknowledged"))
    first, second = responses.calls
    assert [form_of(c)["To"] for c in responses.calls] == [
        "+912030458306",
        "+16466883041",
    ]  # contacts.hotline
    sms = form_of(first)
    assert sms["From"] == "+14155550100"
    assert sms["Body"].startswith("[P2][acme] mail1: SMTP port not answering")
    assert "Repage 2" in sms["Body"] and "watcher incidents ack 7" in sms["Body"]
    assert (
        first.request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{SID}:twilio-auth-token-55".encode()).decode()
    )
    assert first.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert second.request.url == f"{BASE}/Messages.json"


@responses.activate
def test_a_p1_also_rings_and_reads_the_summary(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Messages.json", status=201, json=MESSAGE)
    responses.post(f"{BASE}/Calls.json", status=201, json=CALL)
    twilio(tmp_path, to=["+91 98200 00001"]).page(
        content(priority="P1", priority_name="Urgent", summary="SMTP <down> & out")
    )
    sms, call = responses.calls
    assert call.request.url == f"{BASE}/Calls.json"
    form = form_of(call)
    assert form["To"] == "+919820000001" and form["From"] == "+14155550100"
    assert form["Twiml"].startswith(
        '<Response><Say loop="2">watcher page for acme. Urgent priority. mail1: SMTP &lt;down&gt; &amp; out'
    )


@responses.activate
def test_resolve_texts_and_can_be_turned_off(tmp_path: Path) -> None:
    responses.post(f"{BASE}/Messages.json", status=201, json=MESSAGE)
    twilio(tmp_path).page_resolve(content(text="Resolved: recovered"))
    assert form_of(responses.calls[0])["Body"].startswith("[Resolved] [P2][acme]")
    twilio(tmp_path, notify_resolve=False).page_resolve(content())
    assert len(responses.calls) == 2  # one per hotline phone, none for the second


@responses.activate
def test_a_retry_after_a_partial_failure_does_not_text_the_same_phone_twice(tmp_path: Path) -> None:
    responses.add_callback(
        responses.POST,
        f"{BASE}/Messages.json",
        callback=replies(
            (201, MESSAGE, None),
            (
                429,
                {
                    "code": 20429,
                    "message": "Too Many Requests",
                    "more_info": "https://www.twilio.com/docs/errors/20429",
                    "status": 429,
                },
                {"Retry-After": "5"},
            ),
            (201, MESSAGE, None),
        ),
    )
    t = twilio(tmp_path)
    page = content(delivery_id=31)
    with pytest.raises(TransientError, match="Too Many Requests") as raised:
        t.page(page)
    assert raised.value.retry_after == 5
    t.page(page)
    assert [form_of(c)["To"] for c in responses.calls] == [
        "+912030458306",
        "+16466883041",
        "+16466883041",
    ]


@responses.activate
def test_wrong_credentials_and_a_bad_number_are_permanent(tmp_path: Path) -> None:
    responses.add_callback(
        responses.POST,
        f"{BASE}/Messages.json",
        callback=replies(
            (
                401,
                {
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
                None,
            ),
            (
                400,
                {
                    "code": 21211,
                    "message": "The 'To' number +1646 is not a valid phone number.",
                    "status": 400,
                },
                None,
            ),
        ),
    )
    t = twilio(tmp_path)
    with pytest.raises(PermanentError, match="Authenticate"):
        t.page(content(delivery_id=1))
    with pytest.raises(PermanentError, match="not a valid phone number"):
        t.page(content(delivery_id=2))


@responses.activate
def test_an_outage_is_retried_by_the_outbox(tmp_path: Path) -> None:
    text = site_config(
        unique_site(),
        "  paging:\n    - twilio: "
        + json.dumps(
            {
                "account_sid": SID,
                "auth_token": "twilio-token-66",
                "from": "+14155550100",
                "to": ["+912030458306"],
                "call": [],
            }
        ),
    )
    site = Site(tmp_path, text)
    responses.add_callback(
        responses.POST,
        f"{BASE}/Messages.json",
        callback=replies(
            (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, None),
            (201, MESSAGE, None),
        ),
    )
    try:
        for _ in range(11):
            site.smtp_refused()
            site.tick()
            site.deliver()
            site.advance(minutes=1)
        site.deliver()  # past the backoff of the first, failed attempt
        assert [(r.action, r.state, r.attempts) for r in site.store.outbox()] == [
            ("page", "done", 2)
        ]
    finally:
        site.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"account_sid": "AC123"}, "32 hex digits"),
        ({"to": ["020 3045 8306"]}, "international form"),
        ({"from": None, "messaging_service_sid": "MG1"}, "voice calls need from"),
        ({"call": ["urgent"]}, "not a watcher priority"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, extra: dict[str, object], message: str
) -> None:
    from watcher.config.models import ConfigError

    options = {"account_sid": SID, "auth_token": "x-token", "from": "+14155550100", **extra}
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        build(tmp_path, "twilio", options, role="paging")


def test_no_hotline_phone_is_a_permanent_error(tmp_path: Path) -> None:
    t = twilio(tmp_path)
    t.env.contacts = t.env.contacts.model_copy(update={"hotline": []})
    with pytest.raises(PermanentError, match="no contact in contacts.hotline has a phone"):
        t.page(content())
