"""``agent_checkins``: which managed devices stopped checking in, read from the device
manager's (MDM) HTTP API.

    - agent_checkins:
        url: https://mdm.example/api/v1/devices
        headers: {Authorization: "Bearer ${MDM_TOKEN}"}
        list_path: data.devices          # where the device list is in each page
        fields: {id: udid, name: device_name, last_checkin: last_seen}
        pagination: {next_path: links.next}     # or {page_param: page}, or {link_header: true}
        stale_after: 24h

One fleet result (``devices_total``, ``stale_devices``, ``stale_ratio``,
``never_checked_in``; the evidence lists the stalest devices) for rules on the ratio,
and with ``per_device: true`` also one result per stale device, labelled ``device``, so
each device is an incident of its own. The label ``scope`` (``fleet`` or ``device``) tells
the two apart in a rule: a condition on ``stale_ratio`` alone would be *unknown* for a
device's results and keep its incident from ever resolving. Those are capped at ``max_devices`` (the stalest
first; a device already reported keeps its place), and a reported device gets ``ok``
results once it checks in again, or leaves the list, so its incident resolves.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext, Result
from probes.http import BasicAuth, json_path_get, may_send_credentials
from probes.mailbase import cert_failure
from watcher.core.durations import format_duration, parse_duration
from watcher.core.secret import Secret, protect_url
from watcher.delivery.httpclient import new_session

__all__ = ["AgentCheckinsProbe", "AgentCheckinsConfig", "Device", "parse_checkin_time"]

# How many rounds a recovered device keeps getting ok results when the watcher does not
# say (``results_to_resolve``, from its resolve_after and flap window): the defaults' 10.
RECOVERY_ROUNDS = 10
MAX_PAGE_BYTES = 20 * 1024 * 1024
FLEET = {"scope": "fleet"}


class Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "id"
    name: str = "name"
    last_checkin: str = "last_checkin"


class Pagination(BaseModel):
    """One way to reach the next page: a URL in the body, a page number, or a Link header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    next_path: str | None = None
    page_param: str | None = None
    page_start: int = 1
    page_size_param: str | None = None
    page_size: int | None = Field(default=None, ge=1)
    link_header: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> Pagination:
        ways = [self.next_path is not None, self.page_param is not None, self.link_header]
        if sum(ways) != 1:
            raise ValueError(
                "choose one: next_path (a URL in the body), page_param (a page number) or link_header: true"
            )
        if (self.page_size_param is None) != (self.page_size is None):
            raise ValueError("page_size_param and page_size go together")
        return self


class AgentCheckinsConfig(ProbeConfig):
    url: str
    headers: dict[str, Secret] = {}
    basic_auth: BasicAuth | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    list_path: str = ""
    fields: Fields = Fields()
    pagination: Pagination | None = None
    max_pages: int = Field(default=100, ge=1)
    stale_after: timedelta = timedelta(hours=24)
    never_checked_in_is_stale: bool = True
    per_device: bool = False
    max_devices: int = Field(default=20, ge=1, le=1000)
    evidence_devices: int = Field(default=15, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return protect_url(value)

    @field_validator("stale_after", mode="before")
    @classmethod
    def _stale(cls, value: Any) -> Any:
        return parse_duration(value)


def parse_checkin_time(value: Any) -> datetime | None:
    """ISO-8601 (a date without an offset is UTC) or epoch seconds or milliseconds."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (
        isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())
    ):
        number = float(value)
        if number <= 0:
            return None
        if number > 1e11:  # milliseconds: 1e11 seconds is the year 5138
            number /= 1000.0
        return datetime.fromtimestamp(number, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither ISO-8601 nor epoch seconds") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise ValueError(f"{value!r} is neither ISO-8601 nor epoch seconds")


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    last_checkin: datetime | None

    def age(self, now: datetime) -> float | None:
        return None if self.last_checkin is None else (now - self.last_checkin).total_seconds()


class _Unreadable(Exception):
    """The device list cannot be read; carries the verdict."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class AgentCheckinsProbe(Probe):
    kind = "agent_checkins"
    Config = AgentCheckinsConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "devices_total",
            "stale_devices",
            "stale_ratio",
            "never_checked_in",
            "pages",
            "latency_s",
            "checkin_age_s",
        }
    )
    labels = ("scope", "device")
    config: AgentCheckinsConfig

    def __init__(self, config: AgentCheckinsConfig) -> None:
        super().__init__(config)
        self._session: requests.Session | None = None
        # device id -> ok rounds still owed (None while it is reported stale)
        self._reported: dict[str, int | None] | None = None

    def items(self) -> list[dict[str, str]]:
        # Devices are found at run time; a whole failure is the fleet result's.
        return [dict(FLEET)]

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def check(self, ctx: ProbeContext) -> list[Outcome]:
        cfg = self.config
        now = datetime.now(UTC)
        started = now
        try:
            devices, pages, skipped = self._fetch(ctx)
        except _Unreadable as exc:
            return [replace(exc.outcome, labels=FLEET)]
        finally:
            # No connection is kept for the next check: one opened by an earlier check is
            # not tied to this check's deadline, so a peer could hold it past its timeout.
            self.close()
        latency = (datetime.now(UTC) - started).total_seconds()
        fleet = self._fleet(devices, pages, skipped, now, latency)
        if not cfg.per_device:
            return [fleet]
        return [fleet, *self._per_device(ctx, devices, now)]

    # ------------------------------------------------------------------ reading

    def _session_for(self, ctx: ProbeContext) -> requests.Session:
        if self._session is None:
            cfg = self.config
            verify: bool | str = (cfg.ca_file or True) if cfg.tls_verify else False
            session = new_session(timeout=ctx.timeout, verify=verify, clients=ctx.http)
            session.headers.update({k: v.reveal() for k, v in cfg.headers.items()})
            session.headers["Accept"] = "application/json"
            if cfg.basic_auth is not None:
                session.auth = (cfg.basic_auth.user, cfg.basic_auth.password.reveal())
            if cfg.headers or cfg.basic_auth:
                session.hooks["response"].append(self._refuse_redirect_elsewhere)
            self._session = session
        return self._session

    def _refuse_redirect_elsewhere(
        self, response: requests.Response, *args: Any, **kwargs: Any
    ) -> None:
        """requests drops basic auth on a redirect to another host, but not the configured
        headers (an API key): such a redirect is not followed at all."""
        if response.is_redirect:
            target = urljoin(response.url, response.headers["location"])
            if not may_send_credentials(self.config.url, target):
                response.close()
                raise _Unreadable(
                    Outcome.error(
                        f"{urlsplit(response.url).netloc} redirects to {urlsplit(target).netloc}, another host: "
                        "the credentials are not sent there; set url to where the device list is",
                        reason="redirect",
                    )
                )

    def _fetch(self, ctx: ProbeContext) -> tuple[list[Device], int, list[str]]:
        cfg = self.config
        session = self._session_for(ctx)
        devices: list[Device] = []
        skipped: list[str] = []
        seen_urls: set[str] = set()
        url: str | None = cfg.url
        page_number = cfg.pagination.page_start if cfg.pagination else 0
        pages = 0
        while url is not None:
            if pages >= cfg.max_pages:
                raise _Unreadable(
                    Outcome.error(
                        f"the device list has more than {cfg.max_pages} pages; raise max_pages",
                        reason="pagination",
                    )
                )
            request_url = self._page_url(url, page_number)
            if request_url in seen_urls:
                raise _Unreadable(
                    Outcome.error(f"pagination loops back to {request_url}", reason="pagination")
                )
            seen_urls.add(request_url)
            response, body = self._get(session, request_url, ctx.timeout)
            pages += 1
            items, document = self._items(body, request_url)
            for item in items:
                device = self._device(item, skipped)
                if device is not None:
                    devices.append(device)
            url, page_number = self._next(url, page_number, response, document, items)
            if (
                url is not None
                and (cfg.headers or cfg.basic_auth)
                and not may_send_credentials(cfg.url, url)
            ):
                # The link comes from the answer: it must not steer the credentials elsewhere.
                raise _Unreadable(
                    Outcome.error(
                        f"the next page is on another host ({urlsplit(url).netloc}); "
                        "the credentials are not sent there",
                        reason="pagination",
                    )
                )
        return devices, pages, skipped

    def _page_url(self, url: str, page_number: int) -> str:
        pagination = self.config.pagination
        if pagination is None or pagination.page_param is None:
            return url
        parts = urlsplit(url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in (pagination.page_param, pagination.page_size_param)
        ]
        query.append((pagination.page_param, str(page_number)))
        if pagination.page_size_param and pagination.page_size:
            query.append((pagination.page_size_param, str(pagination.page_size)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _get(
        self, session: requests.Session, url: str, timeout: float
    ) -> tuple[requests.Response, bytes]:
        where = urlsplit(url).netloc
        try:
            response = session.get(url, timeout=timeout, stream=True)
        except requests.exceptions.SSLError as exc:
            verify = _find_cause(exc, ssl.SSLCertVerificationError)
            if verify is not None:
                reason, message = cert_failure(verify, where)
                raise _Unreadable(Outcome.fail(message, reason=reason)) from None
            raise _Unreadable(
                Outcome.fail(f"TLS with {where} failed: {exc}", reason="tls")
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise _Unreadable(
                Outcome.fail(f"no connection to {where} within {timeout:.1f}s", reason="timeout")
            ) from None
        except requests.exceptions.ReadTimeout:
            raise _Unreadable(
                Outcome.fail(f"{where} did not answer within {timeout:.1f}s", reason="timeout")
            ) from None
        except requests.exceptions.ConnectionError as exc:
            refused = _find_cause(exc, ConnectionRefusedError) is not None
            text = f"connection to {where} refused" if refused else f"cannot reach {where}: {exc}"
            raise _Unreadable(Outcome.fail(text, reason="refused")) from None
        except requests.exceptions.RequestException as exc:
            raise _Unreadable(
                Outcome.fail(f"request to {where} failed: {exc}", reason="protocol")
            ) from None
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + timeout
        with response:
            try:
                for chunk in _body_chunks(response):
                    if time.monotonic() > deadline:
                        raise _Unreadable(
                            Outcome.fail(
                                f"{where} did not send the page within {timeout:.1f}s",
                                reason="timeout",
                            )
                        )
                    size += len(chunk)
                    if size > MAX_PAGE_BYTES:
                        raise _Unreadable(
                            Outcome.error(
                                f"a page of {url} is over {MAX_PAGE_BYTES // 2**20} MiB",
                                reason="format",
                            )
                        )
                    chunks.append(chunk)
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise _Unreadable(
                    Outcome.fail(f"{where} broke off the answer: {exc}", reason="protocol")
                ) from None
        body = b"".join(chunks)
        if response.status_code in (401, 403):
            raise _Unreadable(
                Outcome.error(
                    f"the device manager refused the credentials: HTTP {response.status_code} from {url}",
                    reason="auth",
                    evidence=_snippet(body),
                )
            )
        if not 200 <= response.status_code < 300:
            raise _Unreadable(
                Outcome.fail(
                    f"HTTP {response.status_code} from {url}",
                    reason="status",
                    evidence=_snippet(body),
                )
            )
        return response, body

    def _items(self, body: bytes, url: str) -> tuple[list[Any], Any]:
        try:
            document = json.loads(body)
        except ValueError:
            raise _Unreadable(
                Outcome.error(
                    f"{url} did not return JSON", reason="format", evidence=_snippet(body)
                )
            ) from None
        path = self.config.list_path
        try:
            items = json_path_get(document, path) if path else document
        except KeyError:
            raise _Unreadable(
                Outcome.error(
                    f"no {path!r} in the answer of {url}; check list_path",
                    reason="format",
                    evidence=_snippet(body),
                )
            ) from None
        if items is None:
            items = []
        if not isinstance(items, list):
            raise _Unreadable(
                Outcome.error(
                    f"{path or 'the answer'} of {url} is not a list; check list_path",
                    reason="format",
                )
            )
        return items, document

    def _device(self, item: Any, skipped: list[str]) -> Device | None:
        fields = self.config.fields
        if not isinstance(item, dict):
            skipped.append(f"not an object: {str(item)[:60]}")
            return None
        try:
            raw_id = json_path_get(item, fields.id)
        except KeyError:
            skipped.append(f"no {fields.id!r}: {str(item)[:80]}")
            return None
        try:
            name = json_path_get(item, fields.name)
        except KeyError:
            name = raw_id
        try:
            raw_time = json_path_get(item, fields.last_checkin)
        except KeyError:
            raw_time = None
        try:
            last = parse_checkin_time(raw_time)
        except ValueError as exc:
            skipped.append(f"device {raw_id}: {exc}")
            last = None
        return Device(str(raw_id), str(name), last)

    def _next(
        self,
        url: str,
        page_number: int,
        response: requests.Response,
        document: Any,
        items: list[Any],
    ) -> tuple[str | None, int]:
        pagination = self.config.pagination
        if pagination is None:
            return None, page_number
        if pagination.link_header:
            link = response.links.get("next", {}).get("url")
            return (urljoin(response.url, link) if link else None), page_number
        if pagination.next_path is not None:
            try:
                link = json_path_get(document, pagination.next_path)
            except KeyError:
                link = None
            return (urljoin(response.url, str(link)) if link else None), page_number
        if not items or (pagination.page_size is not None and len(items) < pagination.page_size):
            return None, page_number
        return url, page_number + 1

    # ------------------------------------------------------------------ verdicts

    def _is_stale(self, device: Device, now: datetime) -> bool:
        age = device.age(now)
        if age is None:
            return self.config.never_checked_in_is_stale
        return age > self.config.stale_after.total_seconds()

    def _fleet(
        self, devices: list[Device], pages: int, skipped: list[str], now: datetime, latency: float
    ) -> Outcome:
        cfg = self.config
        stale = sorted(
            (d for d in devices if self._is_stale(d, now)),
            key=lambda d: _staleness(d, now),
            reverse=True,
        )
        never = sum(1 for d in devices if d.last_checkin is None)
        total = len(devices)
        metrics = {
            "devices_total": total,
            "stale_devices": len(stale),
            "stale_ratio": round(len(stale) / total, 4) if total else 0.0,
            "never_checked_in": never,
            "pages": pages,
            "latency_s": latency,
        }
        lines = [
            f"{len(stale)} of {total} devices have not checked in for {format_duration(cfg.stale_after)} (stalest first):"
        ]
        for device in stale[: cfg.evidence_devices]:
            lines.append(f"  {device.id}  {device.name}  {_last_seen(device, now)}")
        if len(stale) > cfg.evidence_devices:
            lines.append(f"  ... and {len(stale) - cfg.evidence_devices} more")
        if skipped:
            lines.append(f"{len(skipped)} entries could not be read:")
            lines.extend(f"  {s}" for s in skipped[:10])
        message = (
            f"{len(stale)} of {total} devices stale ({metrics['stale_ratio'] * 100:.0f}%), "
            f"{never} never checked in"
            if total
            else "the device list is empty"
        )
        return Outcome.ok(message, metrics=metrics, labels=FLEET, evidence="\n".join(lines))

    def _per_device(self, ctx: ProbeContext, devices: list[Device], now: datetime) -> list[Outcome]:
        cfg = self.config
        reported = self._reported_devices(ctx)
        by_id = {d.id: d for d in devices}
        stale = {d.id for d in devices if self._is_stale(d, now)}
        outcomes: list[Outcome] = []
        # Devices already reported keep their place under the cap; the stalest fill the rest.
        keep = [i for i, owed in reported.items() if owed is None and i in stale]
        fresh = sorted(stale - set(keep), key=lambda i: _staleness(by_id[i], now), reverse=True)
        chosen = (keep + fresh)[: cfg.max_devices]
        for device_id in chosen:
            device = by_id[device_id]
            reported[device_id] = None
            outcomes.append(self._stale_outcome(device, now))
        for device_id, owed in list(reported.items()):
            if device_id in chosen:
                continue
            if device_id in stale:
                continue  # over the cap now: neither confirmed nor cleared
            if owed is None:
                owed = int(ctx.services.get("results_to_resolve", RECOVERY_ROUNDS))
            known = by_id.get(device_id)
            if known is None:
                message = f"device {device_id} is no longer in the device list"
                metrics: dict[str, float] = {}
            else:
                message = f"device {known.name} ({known.id}) checked in {_last_seen(known, now)}"
                age = known.age(now)
                metrics = {"checkin_age_s": age} if age is not None else {}
            outcomes.append(Outcome.ok(message, metrics=metrics, labels=_device_labels(device_id)))
            if owed <= 1:
                del reported[device_id]
            else:
                reported[device_id] = owed - 1
        return outcomes

    def _stale_outcome(self, device: Device, now: datetime) -> Outcome:
        age = device.age(now)
        labels = _device_labels(device.id)
        if age is None:
            return Outcome.fail(
                f"device {device.name} ({device.id}) has never checked in",
                metrics={"never_checked_in": 1},
                labels=labels,
                reason="never_checked_in",
            )
        return Outcome.fail(
            f"device {device.name} ({device.id}) last checked in {_last_seen(device, now)}"
            f" (stale after {format_duration(self.config.stale_after)})",
            metrics={"checkin_age_s": round(age, 1), "never_checked_in": 0},
            labels=labels,
            reason="stale",
        )

    def _reported_devices(self, ctx: ProbeContext) -> dict[str, int | None]:
        """Devices this check reported stale, recovered from the last results after a restart."""
        if self._reported is None:
            self._reported = {}
            previous: Callable[[str, str], Iterable[Result]] | None = ctx.services.get(
                "previous_results"
            )
            if previous is not None:
                probe_id = self.config.name or self.kind
                for result in previous(ctx.target, probe_id):
                    device = result.labels.get("device")
                    if device and result.status == "fail":
                        self._reported[device] = None
        return self._reported


def _device_labels(device_id: str) -> dict[str, str]:
    return {"scope": "device", "device": device_id}


def _staleness(device: Device, now: datetime) -> float:
    age = device.age(now)
    return float("inf") if age is None else age


def _last_seen(device: Device, now: datetime) -> str:
    age = device.age(now)
    if age is None or device.last_checkin is None:
        return "never"
    ago = format_duration(max(0.0, age)) if age >= 1 else "just now"
    return f"{ago} ago ({device.last_checkin.isoformat(timespec='seconds')})"


def _body_chunks(response: requests.Response) -> Iterable[bytes]:
    """The body as it arrives, a read at a time, so a body that trickles in is seen to
    (a read of 64 KiB waits for all of it); plain chunks where urllib3 lacks read1."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(64 * 1024)
        return
    while chunk := read1(64 * 1024, decode_content=True):
        yield chunk


def _snippet(body: bytes) -> str:
    return body[:2048].decode("utf-8", "replace")


def _find_cause(exc: BaseException, kind: type[BaseException]) -> Any:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        todo.extend(
            [
                current.__cause__,
                current.__context__,
                *[a for a in current.args if isinstance(a, BaseException)],
            ]
        )
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return None
