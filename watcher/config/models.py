"""watcher.yml and rule packs, loaded into typed models and checked as a whole.

Everything wrong is reported at once, each with file:line:column, the YAML path, what is
wrong and what to write instead. Nothing starts on a config with a problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import date, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    create_model,
    field_validator,
)

import integrations
import probes
from probes.alertmanager import AlertmanagerSettings
from probes.base import Probe, ProbeConfig
from rules.engine import RuleSet
from watcher.config.thresholds import Thresholds
from watcher.core.secret import Secret
from watcher.core.types import (
    Duration,
    Interval,
    OptionalDuration,
    OptionalInterval,
    OptionalRetryInterval,
    RetryInterval,
    check_timezone,
    check_weekdays,
    label_strings,
)
from watcher.core.yamlsource import (
    ConfigError,
    ConfigIssue,
    did_you_mean,
)
from watcher.engine.flapping import FlappingConfig
from watcher.engine.maintenance import MaintenanceConfig
from watcher.engine.outage import OutageConfig
from watcher.engine.sla import WEEKDAYS, BusinessCalendar
from watcher.schedule.cron import check_cron

__all__ = [
    "Config",
    "ConfigError",
    "Contact",
    "ProbeSpec",
    "SshOptions",
    "SmtpSettings",
    "AuditSchedule",
    "Target",
    "WatcherConfig",
    "SHIPPED_RULES",
]

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


class Model(BaseModel):
    # "inf" and "nan" as text would pass as floats: no setting means either
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class Defaults(Model):
    """Applied to every probe unless it or its target says otherwise."""

    interval: Interval = timedelta(seconds=60)
    # 10 s, not a fraction of the interval: the rule pack's holds are wall time (for: 2m),
    # so a fixed recheck pace confirms them with the same ~12 looks whatever the interval,
    # and only failing checks pay for it (6x a healthy one's load at the 60 s default).
    retry_interval: RetryInterval = timedelta(seconds=10)
    timeout: Duration = timedelta(seconds=10)
    jitter: bool = True
    resolve_after: int = Field(default=2, ge=1)
    reopen_within: Duration = timedelta(hours=1)
    comment_every: Duration = timedelta(minutes=15)


class SshOptions(Model):
    """How to reach targets over SSH; ``ssh:`` at the top gives defaults, a target overrides."""

    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    passphrase: Secret | None = None
    password: Secret | None = None
    agent: bool | None = None
    known_hosts: str | None = None
    host_key: str | None = None
    trust_on_first_use: bool | None = None
    connect_timeout: OptionalDuration = None
    banner_timeout: OptionalDuration = None
    auth_timeout: OptionalDuration = None
    keepalive: OptionalDuration = None
    idle_close: OptionalDuration = None
    max_channels: int | None = Field(default=None, ge=1)

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", value):
            raise ValueError(
                "host_key is a fingerprint like SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s "
                "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host prints it)"
            )
        return value

    def merged(self, override: SshOptions | None) -> SshOptions:
        if override is None:
            return self
        changes = {
            k: v for k, v in override.model_dump(exclude_unset=True).items() if v is not None
        }
        return self.model_copy(update={k: getattr(override, k) for k in changes})


class BusinessHoursConfig(Model):
    """When a ``business`` SLA clock runs. The default is the support policy's."""

    timezone: str = "Asia/Kolkata"
    days: list[str] = ["mon", "tue", "wed", "thu", "fri"]
    start: str = "08:00"
    end: str = "18:00"
    holidays: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        return check_weekdays(value)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> str:
        if isinstance(value, int):  # YAML 1.1 reads 08:00 as sexagesimal 480
            value = f"{value // 60:02d}:{value % 60:02d}"
        text = str(value)
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
            raise ValueError(f'{value!r} is not a time of day; write it like "08:00"')
        return text

    def calendar(self) -> BusinessCalendar:
        start = time.fromisoformat(self.start)
        end = time.fromisoformat(self.end)
        return BusinessCalendar(
            timezone=self.timezone,
            days=frozenset(WEEKDAYS.index(d) for d in self.days),
            start=start,
            end=end,
            holidays=frozenset(self.holidays),
        )


class Contact(Model):
    name: str | None = None
    role: str | None = None
    email: str | None = None
    phone: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.role or self.email or self.phone or "contact"


DEFAULT_ESCALATION = [
    Contact(role="Senior Product Manager"),
    Contact(role="VP of Business"),
    Contact(role="CTO"),
]


class Contacts(Model):
    hotline: list[Contact] = []
    escalation: list[Contact] = DEFAULT_ESCALATION
    managers: list[Contact] = []


class SmtpSettings(Model):
    """The mail relay for tickets by mail, emergency mail and audit reports."""

    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    user: str | None = None
    password: Secret | None = None
    sender: str = Field(default="watcher@localhost", alias="from")
    timeout: Duration = timedelta(seconds=10)
    tls_verify: bool = True
    ca_file: str | None = None


class HistoryRetention(Model):
    """How long results are kept: raw, then hourly and daily summaries for the audits."""

    raw: Duration = timedelta(days=2)
    hourly: Duration = timedelta(days=90)
    daily: Duration = timedelta(days=730)


class Checkin(Model):
    """A pushed heartbeat: a job calls ``POST /checkin/<name>``; late past its period (or
    cron schedule) plus grace, failed when it calls ``/checkin/<name>/fail``."""

    name: str
    period: OptionalDuration = None
    schedule: str | None = None
    grace: Duration = timedelta(minutes=5)
    timezone: str | None = None
    token: Secret | None = None
    target: str | None = None
    labels: dict[str, str] = {}
    description: str | None = None
    runbook: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(
                "a check-in name is letters, digits and . _ - @ (it goes into the URL /checkin/<name>)"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        check_timezone(value)
        return value

    @property
    def result_target(self) -> str:
        """The target its results belong to: the one named, else a target of its own."""
        return self.target or self.name

    def as_target(self) -> Target:
        return Target(
            name=self.name, description=self.description, labels=self.labels, runbook=self.runbook
        )


AUDIT_CONTACT_LISTS = ("managers", "escalation", "hotline")


class AuditSchedule(Model):
    """A report mailed on a schedule: ``{every: "mon 08:00", since: 7d, to: [managers]}``.

    ``to`` takes addresses or the names of the ``contacts:`` lists; ``since`` defaults to
    the time since the schedule's previous run; times are in ``business_hours.timezone``.
    """

    name: str | None = None
    every: str
    since: OptionalDuration = None
    to: list[str] = ["managers"]
    format: Literal["html", "json", "md"] = "html"
    attach: bool = False
    subject: str | None = None
    thresholds: dict[str, float] = {}

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        from watcher.schedule.every import parse_every

        parse_every(value)
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "@" not in entry and entry not in AUDIT_CONTACT_LISTS:
                raise ValueError(
                    f"{entry!r} is neither a mail address nor a contact list ({', '.join(AUDIT_CONTACT_LISTS)})"
                )
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        known = [f.name for f in dataclass_fields(Thresholds)]
        for key in value:
            if key not in known:
                raise ValueError(
                    f"unknown threshold {key!r}; {did_you_mean(key, known) or 'known: ' + ', '.join(known)}"
                )
        return value

    @property
    def key(self) -> str:
        """What the last run is remembered by: the name, else the schedule."""
        return self.name or self.every

    def recipients(self, contacts: Contacts) -> list[str]:
        out: list[str] = []
        for entry in self.to:
            if "@" in entry:
                out.append(entry)
            else:
                out.extend(c.email for c in getattr(contacts, entry) if c.email)
        return list(dict.fromkeys(out))


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _single_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    if isinstance(value, BaseModel):
        fields = list(type(value).model_fields)
        return fields[0] if len(fields) == 1 else None
    return None


def _entry_union(models: Mapping[str, type[BaseModel]], what: str) -> Any:
    """``- http: {...}`` style list items, one model per kind, told apart by the key."""
    members = []
    for kind, config_model in sorted(models.items()):
        entry = create_model(  # type: ignore[call-overload]  # the field's type is built here
            f"{kind}_entry",
            __config__=ConfigDict(extra="forbid", frozen=True),
            **{kind: (Annotated[config_model, BeforeValidator(_none_is_empty)], ...)},
        )
        members.append(Annotated[entry, Tag(kind)])
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built at run time
        Discriminator(_single_key),
    ]


@cache
def _probe_entry() -> Any:
    return _entry_union({k: probes.probe_class(k).Config for k in probes.kinds()}, "probe")


@cache
def _integration_entry() -> Any:
    return _entry_union(
        {k: integrations.integration_class(k).Config for k in integrations.kinds()}, "integration"
    )


def _entry_kind_and_config(entry: BaseModel) -> tuple[str, Any]:
    kind = next(iter(type(entry).model_fields))
    return kind, getattr(entry, kind)


@dataclass(frozen=True)
class ProbeSpec:
    """One configured check on one target."""

    kind: str
    id: str
    config: ProbeConfig

    @property
    def probe_class(self) -> type[Probe]:
        return probes.probe_class(self.kind)


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class Target(Model):
    """A server, device or service the site depends on, and the checks that watch it."""

    name: str
    host: str | None = None
    description: str | None = None
    labels: dict[str, str] = {}
    transport: Literal["local", "ssh"] | None = None
    ssh: SshOptions | None = None
    via: str | None = None
    depends_on: list[str] = []
    interval: OptionalInterval = None
    retry_interval: OptionalRetryInterval = None
    timeout: OptionalDuration = None
    runbook: str | None = None
    # this target's own flap detection (a radio link that drops now and then may flap
    # by nature); the site's `flapping:` otherwise
    flapping: FlappingConfig | None = None
    probes: list[Any] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(
                "a target name is letters, digits and . _ - @, starting with a letter or digit"
            )
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return label_strings(value)

    @property
    def runner_kind(self) -> Literal["local", "ssh"]:
        if self.transport:
            return self.transport
        if self.via is not None:
            return "ssh"  # the bastion's own localhost is still a remote host
        return "local" if self.host is None or self.host in LOCAL_HOSTS else "ssh"

    def probe_specs(self) -> list[ProbeSpec]:
        specs = []
        for entry in self.probes:
            kind, cfg = _entry_kind_and_config(entry)
            specs.append(ProbeSpec(kind=kind, id=cfg.name or kind, config=cfg))
        return specs

    def timing(self, spec: ProbeSpec, defaults: Defaults) -> tuple[timedelta, timedelta]:
        """(interval, timeout) of one of this target's checks: the check's own, else the
        target's, else the probe kind's interval, else ``defaults:``."""
        interval = (
            spec.config.interval
            or self.interval
            or spec.probe_class.default_interval
            or defaults.interval
        )
        timeout = spec.config.timeout or self.timeout or defaults.timeout
        return interval, timeout


class MetricsSettings(Model):
    """What /metrics exports beyond each check's success, duration and certificate expiry."""

    detail: bool = False


class Integrations(Model):
    tickets: list[Any] = []
    paging: list[Any] = []

    def entries(self) -> list[tuple[Literal["tickets", "paging"], str, Any]]:
        """(role, kind, config) for every configured integration."""
        out: list[tuple[Literal["tickets", "paging"], str, Any]] = []
        roles: tuple[Literal["tickets", "paging"], ...] = ("tickets", "paging")
        for role in roles:
            for entry in getattr(self, role):
                kind, cfg = _entry_kind_and_config(entry)
                out.append((role, kind, cfg))
        return out


def _workers(value: Any) -> int | str:
    """One clear sentence for a bad ``workers:`` rather than one per member of the union."""
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 512:
        return value
    raise ValueError(f"{value!r} is not a number of workers; write auto or a number from 1 to 512")


class ClusterSettings(Model):
    """Several ``watcher run`` on one PostgreSQL state share the checks (watcher/cluster)."""

    lease: Duration = timedelta(seconds=15)


class DeadMansSwitch(Model):
    """A URL each live cluster calls once per interval, from its leader: silence there
    means every watcher of the site is down."""

    url: str
    interval: Duration = timedelta(minutes=1)


class WatcherConfig(Model):
    """The whole of watcher.yml."""

    site: str
    state: str = "watcher.db"
    listen: str | None = "127.0.0.1:9177"
    api_token: Secret | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto" sizes the pool from measured check times (watcher/schedule/workers.py: auto_workers)
    workers: Annotated[int | Literal["auto"], PlainValidator(_workers)] = "auto"
    defaults: Defaults = Defaults()
    ssh: SshOptions = SshOptions()
    business_hours: BusinessHoursConfig = BusinessHoursConfig()
    smtp: SmtpSettings | None = None
    contacts: Contacts = Contacts()
    integrations: Integrations = Integrations()
    rules: list[str] = ["default"]
    history: HistoryRetention = HistoryRetention()
    audits: list[AuditSchedule] = []
    targets: list[Target] = []
    checkins: list[Checkin] = []
    # alerts pushed by Prometheus Alertmanager or Grafana (probes/alertmanager.py)
    alertmanager: AlertmanagerSettings | None = None
    maintenance: list[MaintenanceConfig] = []
    outages: list[OutageConfig] = []
    flapping: FlappingConfig = FlappingConfig()
    metrics: MetricsSettings = MetricsSettings()
    cluster: ClusterSettings = ClusterSettings()
    dead_mans_switch: DeadMansSwitch | None = None

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(
                "a site name is letters, digits and . _ - @ (it goes into ticket subjects)"
            )
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port; write e.g. 127.0.0.1:9177")
        return value


def install_entry_types() -> None:
    """Puts the registries' config models into the ``probes`` and ``tickets`` fields.

    Done at first load rather than import so that the registries can be extended and
    so importing this module stays cheap.
    """
    if getattr(install_entry_types, "done", False):
        return
    Target.model_fields["probes"].annotation = list[_probe_entry()]  # type: ignore[misc, assignment]
    Target.model_rebuild(force=True)
    for role in ("tickets", "paging"):
        Integrations.model_fields[role].annotation = list[_integration_entry()]  # type: ignore[misc, assignment]
    Integrations.model_rebuild(force=True)
    WatcherConfig.model_rebuild(force=True)
    install_entry_types.done = True  # type: ignore[attr-defined]


@dataclass
class Config:
    """A loaded, checked configuration: the model, its rules and where it came from."""

    file: Path
    model: WatcherConfig
    rules: RuleSet
    rule_files: list[Path] = field(default_factory=list)
    # ${VAR}s not set, read as empty: only when loaded with secrets="optional"
    unset: list[ConfigIssue] = field(default_factory=list)

    @property
    def site(self) -> str:
        return self.model.site

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def state_path(self) -> Path:
        return self.path(self.model.state)

    @property
    def state_is_database(self) -> bool:
        """state: names a PostgreSQL database (a URL), not a SQLite file."""
        return self.model.state.startswith(("postgresql://", "postgres://"))

    @property
    def state_location(self) -> str | Path:
        """What the store opens: the PostgreSQL URL as written, or the file's path."""
        return self.model.state if self.state_is_database else self.state_path

    @property
    def targets(self) -> dict[str, Target]:
        targets = {t.name: t for t in self.model.targets}
        for checkin in self.model.checkins:  # a check-in without target: is a target of its own
            targets.setdefault(checkin.result_target, checkin.as_target())
        return targets

    @property
    def calendar(self) -> BusinessCalendar:
        return self.model.business_hours.calendar()


# --------------------------------------------------------------------------- loading


# ------------------------------------------------------------------ validation errors
