"""``twilio``: SMS, and for the most urgent priorities a voice call, to the hotline's phones.

One request per recipient (Messages and Calls resources of the 2010-04-01 API). A
delivery that failed half-way is retried for the recipients that did not get it yet,
so a flaky second number does not mean a second SMS to the first.

    - twilio:
        account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
        auth_token: ${TWILIO_TOKEN}
        from: "+14155550100"          # a Twilio number (or messaging_service_sid:)
        to: hotline                   # the phones in contacts.hotline, or a list
        call: [P1]                    # priorities that also ring, reading the subject
"""

from __future__ import annotations

import re
import threading
from typing import Any, Literal
from xml.sax.saxutils import escape

from pydantic import Field, field_validator, model_validator

from integrations.base import Integration, PageContent, PermanentError
from integrations.rest import HttpConfig, call, json_of, session_for
from watcher.core.secret import Secret, protect_basic_auth

__all__ = ["TwilioConfig", "TwilioIntegration"]

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SMS_MAX = 1600
SPOKEN_MAX = 400


def _phone(value: str) -> str:
    compact = re.sub(r"[\s().-]", "", value)
    if not E164.match(compact):
        raise ValueError(
            f"{value!r} is not a phone number in international form, like +912030458306"
        )
    return compact


class TwilioConfig(HttpConfig):
    account_sid: str
    auth_token: Secret
    from_: str | None = Field(default=None, alias="from")
    messaging_service_sid: str | None = None
    to: list[str] | Literal["hotline"] = "hotline"
    sms: bool = True
    call: list[str] = ["P1"]
    notify_resolve: bool = True
    url: str = "https://api.twilio.com"

    @field_validator("account_sid")
    @classmethod
    def _sid(cls, value: str) -> str:
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", value):
            raise ValueError(
                "an account SID is AC followed by 32 hex digits (see the Twilio console)"
            )
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str] | str) -> list[str] | str:
        return [_phone(v) for v in value] if isinstance(value, list) else value

    @field_validator("call")
    @classmethod
    def _call_priorities(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"P[1-9]", name):
                raise ValueError(f"{name!r} is not a watcher priority; write e.g. call: [P1]")
        return value

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return _phone(value) if value is not None else None

    @model_validator(mode="after")
    def _sender(self) -> TwilioConfig:
        if self.from_ is None and self.messaging_service_sid is None:
            raise ValueError("set from: (a Twilio number) or messaging_service_sid:")
        if self.from_ is None and self.call:
            raise ValueError("voice calls need from: (a Twilio number); or set call: []")
        return self


class TwilioIntegration(Integration):
    kind = "twilio"
    Config = TwilioConfig
    roles = frozenset({"paging"})
    config: TwilioConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        self._session.auth = (self.config.account_sid, self.config.auth_token.reveal())
        protect_basic_auth(self.config.account_sid, self.config.auth_token.reveal())
        self._base = f"{self.config.url.rstrip('/')}/2010-04-01/Accounts/{self.config.account_sid}"
        # (delivery id, channel, number) already done: a retried delivery skips them
        self._done: set[tuple[int, str, str]] = set()
        self._lock = threading.Lock()

    def _recipients(self) -> list[str]:
        if isinstance(self.config.to, list):
            return self.config.to
        phones = []
        for contact in self.env.contacts.hotline:
            if contact.phone:
                try:
                    phones.append(_phone(contact.phone))
                except ValueError as exc:
                    raise PermanentError(
                        f"twilio {self.name}: contacts.hotline {contact.label}: {exc}"
                    ) from None
        if not phones:
            raise PermanentError(
                f"twilio {self.name}: no contact in contacts.hotline has a phone number"
            )
        return phones

    def _create(self, resource: str, form: dict[str, str], what: str) -> str:
        response = call(
            self._session,
            "POST",
            f"{self._base}/{resource}.json",
            f"twilio {self.name}: {what}",
            data=form,
        )
        answer = json_of(response, f"twilio {self.name}: {what}")
        return str(answer.get("sid") or "") if isinstance(answer, dict) else ""

    def _once(self, page: PageContent, channel: str, number: str, send: Any) -> None:
        key = (page.delivery_id, channel, number)
        with self._lock:
            if page.delivery_id and key in self._done:
                return
        send()
        with self._lock:
            if page.delivery_id:
                self._done.add(key)
                if len(self._done) > 10_000:  # a long-running watcher: forget the oldest
                    self._done = set(sorted(self._done)[-5_000:])

    def _sms(self, page: PageContent, number: str, text: str) -> None:
        form = {"To": number, "Body": text[:SMS_MAX]}
        if self.config.messaging_service_sid:
            form["MessagingServiceSid"] = self.config.messaging_service_sid
        else:
            assert self.config.from_ is not None
            form["From"] = self.config.from_
        self._once(page, "sms", number, lambda: self._create("Messages", form, f"SMS to {number}"))

    def _call(self, page: PageContent, number: str) -> None:
        assert self.config.from_ is not None
        spoken = f"watcher page for {page.site}. {page.priority_name} priority. {page.target}: {page.summary}"
        twiml = f'<Response><Say loop="2">{escape(spoken[:SPOKEN_MAX])}</Say></Response>'
        form = {"To": number, "From": self.config.from_, "Twiml": twiml}
        self._once(page, "call", number, lambda: self._create("Calls", form, f"call to {number}"))

    def page(self, page: PageContent) -> str | None:
        text = page.subject
        if page.text:
            text += "\n" + page.text
        text += (
            f"\nIncident {page.incident_id}. Acknowledge: watcher incidents ack {page.incident_id}"
        )
        for number in self._recipients():
            if self.config.sms:
                self._sms(page, number, text)
            if page.priority in self.config.call:
                self._call(page, number)
        return None

    def page_resolve(self, page: PageContent) -> None:
        if not (self.config.notify_resolve and self.config.sms):
            return
        text = f"[Resolved] {page.subject}" + (f"\n{page.text}" if page.text else "")
        for number in self._recipients():
            self._sms(page, number, text)

    def close(self) -> None:
        self._session.close()
