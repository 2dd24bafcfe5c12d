"""watcher.yml and rule packs, loaded into typed models and checked as a whole.

Everything wrong is reported at once, each with file:line:column, the YAML path, what is
wrong and what to write instead. Nothing starts on a config with a problem.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    create_model,
    field_validator,
)

import integrations
import probes
from probes.alertmanager import AlertmanagerSettings
from probes.base import Probe, ProbeConfig
from rules.condition import RESULT_FIELDS
from rules.engine import RuleSet
from rules.model import TEMPLATE_BASE_FIELDS, Rule, RuleOverride, RulePack, template_fields
from watcher.durations import parse_duration, parse_interval, parse_retry_interval
from watcher.flapping import FlappingConfig
from watcher.maintenance import MaintenanceConfig
from watcher.outage import OutageConfig
from watcher.secret import Secret
from watcher.sla import WEEKDAYS, BusinessCalendar
from watcher.yamlsource import (
    MAX_ISSUES,
    ConfigError,
    ConfigIssue,
    Located,
    did_you_mean,
    format_path,
    load_yaml,
)

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
    "load_config",
    "SHIPPED_RULES",
]

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "rules"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")

Duration = Annotated[timedelta, PlainValidator(parse_duration)]
OptionalDuration = Annotated[
    timedelta | None, PlainValidator(lambda v: None if v is None else parse_duration(v))
]
Interval = Annotated[timedelta, PlainValidator(parse_interval)]
RetryInterval = Annotated[timedelta, PlainValidator(parse_retry_interval)]
OptionalRetryInterval = Annotated[
    timedelta | None,
    PlainValidator(lambda v: None if v is None else parse_retry_interval(v)),
]
OptionalInterval = Annotated[
    timedelta | None, PlainValidator(lambda v: None if v is None else parse_interval(v))
]


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
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; write e.g. Asia/Kolkata or UTC"
            ) from None
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out = []
        for day in value:
            short = str(day).lower()[:3]
            if short not in WEEKDAYS:
                raise ValueError(
                    f"{day!r} is not a weekday; write mon, tue, wed, thu, fri, sat or sun"
                )
            out.append(short)
        return out

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
        from watcher.cron import parse_cron

        if value is not None:
            parse_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown timezone {value!r}; write e.g. Asia/Kolkata or UTC"
                ) from None
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
        from watcher.every import parse_every

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
        from dataclasses import fields as dataclass_fields

        from watcher.audit import Thresholds  # imported late: the audit module imports this one

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
        entry = create_model(
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
        if isinstance(value, dict):
            return {
                str(k): str(v) if isinstance(v, (int, float, bool)) else v for k, v in value.items()
            }
        return value

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


class MetricsSettings(Model):
    """What /metrics exports beyond each check's success, duration and certificate expiry."""

    detail: bool = False


class Integrations(Model):
    tickets: list[Any] = []
    paging: list[Any] = []

    def entries(self) -> list[tuple[str, str, Any]]:
        """(role, kind, config) for every configured integration."""
        out = []
        for role in ("tickets", "paging"):
            for entry in getattr(self, role):
                kind, cfg = _entry_kind_and_config(entry)
                out.append((role, kind, cfg))
        return out


class ClusterSettings(Model):
    """Several ``watcher run`` on one PostgreSQL state share the checks (watcher/cluster)."""

    lease: Duration = timedelta(seconds=15)


class DeadMansSwitch(Model):
    """A URL each live cluster calls once per interval, from its leader: silence there
    means every watcher of the site is down."""

    url: str
    interval: Duration = timedelta(minutes=1)


def _workers(value: Any) -> int | str:
    """One clear sentence for a bad ``workers:`` rather than one per member of the union."""
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 512:
        return value
    raise ValueError(f"{value!r} is not a number of workers; write auto or a number from 1 to 512")


class WatcherConfig(Model):
    """The whole of watcher.yml."""

    site: str
    state: str = "watcher.db"
    listen: str | None = "127.0.0.1:9177"
    api_token: Secret | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto" sizes the pool from measured check times (watcher/workers.py: auto_workers)
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


def _install_entry_types() -> None:
    """Puts the registries' config models into the ``probes`` and ``tickets`` fields.

    Done at first load rather than import so that the registries can be extended and
    so importing this module stays cheap.
    """
    if getattr(_install_entry_types, "done", False):
        return
    Target.model_fields["probes"].annotation = list[_probe_entry()]  # type: ignore[valid-type]
    Target.model_rebuild(force=True)
    for role in ("tickets", "paging"):
        Integrations.model_fields[role].annotation = list[_integration_entry()]  # type: ignore[valid-type]
    Integrations.model_rebuild(force=True)
    WatcherConfig.model_rebuild(force=True)
    _install_entry_types.done = True  # type: ignore[attr-defined]


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


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: Literal["required", "optional"] = "required",
) -> Config:
    """Loads watcher.yml and its rule packs; raises ConfigError listing every problem.

    With ``secrets="optional"`` (commands that only read the state), an unset ``${VAR}``
    reads as empty and is listed in ``Config.unset`` instead of being a problem."""
    loaded: list[Located] = []
    try:
        return _load_config(Path(path), environ, loaded, secrets)
    except ConfigError as exc:
        if not any(located.from_env for located in loaded):
            raise
        issues = exc.issues
        for located in loaded:
            issues = [_without_env_values(issue, located) for issue in issues]
        raise ConfigError(issues) from None


def load_for_reading(path: str | Path) -> Config:
    """The config for a command that only reads (incidents, explain, audit, maintenance):
    unset ``${VAR}`` secrets read as empty, with one warning on stderr naming them, since
    only commands that probe or deliver (run, once, test-integration) need them."""
    config = load_config(path, secrets="optional")
    if config.unset:
        names = sorted({i.message.split()[2] for i in config.unset})
        print(
            f"watcher: warning: {', '.join(names)} not set; read as empty "
            "(only run, once and test-integration need them)",
            file=sys.stderr,
        )
    return config


# The settings each check after validation reads: when some settings fail validation, the
# checks that do not read them still run, so one pass reports every mistake it can.
_CHECK_NEEDS = {
    "targets": {"integrations", "ssh", "targets"},
    "checkins": {"api_token", "checkins", "listen", "targets"},
    "audits": {"audits", "contacts", "smtp"},
    "rules": {"checkins", "site", "targets"},
    "alert quality": {"checkins", "maintenance", "outages", "targets"},
}


def _load_config(
    file: Path, environ: Mapping[str, str] | None, loaded: list[Located], secrets: str
) -> Config:
    _install_entry_types()
    located = load_yaml(file, environ=environ, defer_unset=True)
    loaded.append(located)
    issues: list[ConfigIssue] = []
    if not isinstance(located.data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    located.mark(()),
                    "",
                    "the file must be a mapping of settings (site:, targets:, ...)",
                )
            ]
        )
    failed: set[str] = set()
    try:
        model = WatcherConfig.model_validate(located.data)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, located, WatcherConfig))
        locs = [e["loc"] for e in exc.errors() if e["loc"]]
        failed = {str(loc[0]) for loc in locs}
        model = _without_failed(located.data, locs)
    packs: list[tuple[Located, RulePack]] = []
    rule_files: list[Path] = []
    rule_names = located.data.get("rules", ["default"])
    if not isinstance(rule_names, list):
        rule_names = []  # the model's own validation reports it
    for index, name in enumerate(rule_names):
        rule_file = _resolve_rule_file(file.parent, str(name))
        if rule_file is None:
            issues.append(
                ConfigIssue(
                    located.mark(("rules", index)),
                    format_path(("rules", index)),
                    f"rule file {name!r} not found (looked beside {file.name} and in the shipped packs)",
                    "the shipped pack is 'default'; other paths are relative to "
                    + str(file.parent),
                )
            )
            continue
        try:
            rules_located = load_yaml(rule_file, environ=environ, defer_unset=True)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        loaded.append(rules_located)
        try:
            packs.append((rules_located, RulePack.model_validate(rules_located.data or {})))
            rule_files.append(rule_file)
        except ValidationError as exc:
            issues.extend(_validation_issues(exc, rules_located, RulePack))

    def runs(check: str) -> bool:
        return model is not None and not (_CHECK_NEEDS[check] & failed)

    if model is not None and runs("targets"):
        issues.extend(_check_targets(model, located))
    if model is not None and runs("checkins"):
        issues.extend(_check_checkins(model, located))
    if model is not None and runs("audits"):
        issues.extend(_check_audits(model, located))
    # The rule packs are checked even when the targets did not load; what depends on the
    # targets is then left for when they do.
    ruleset, rule_issues = _merge_rules(model if runs("rules") else None, packs)
    issues.extend(rule_issues)
    if model is not None and runs("alert quality"):
        issues.extend(_check_alert_quality(model, located, ruleset))
    unset = [issue for source in loaded for issue in source.unset]
    if secrets == "required" and unset:
        # A value left empty by an unset ${VAR} may fail its own check too: said once
        where = {(i.mark.file if i.mark else "", i.path) for i in unset}
        issues = [i for i in issues if (i.mark.file if i.mark else "", i.path) not in where]
        issues.extend(unset)
    if issues or model is None or failed:
        raise ConfigError(issues)
    return Config(file=file, model=model, rules=ruleset, rule_files=rule_files, unset=unset)


def _without_failed(data: dict[str, Any], locs: list[tuple[Any, ...]]) -> WatcherConfig | None:
    """The model of ``data`` without what failed validation (the failing items of a list,
    other settings' defaults), so the checks that read none of it can still run; None if
    even that fails."""
    kept = dict(data)
    for loc in locs:
        name = str(loc[0])
        value = data.get(name)
        if isinstance(value, list) and len(loc) > 1 and isinstance(loc[1], int):
            drop = {lc[1] for lc in locs if str(lc[0]) == name and len(lc) > 1}
            kept[name] = [item for i, item in enumerate(value) if i not in drop]
        else:
            kept.pop(name, None)
    try:
        return WatcherConfig.model_validate(kept)
    except ValidationError:
        return None


def _resolve_rule_file(base: Path, name: str) -> Path | None:
    if name == "default":
        name = "rules/default.yml"
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        beside = base / candidate
        if beside.is_file():
            return beside
        shipped = (
            SHIPPED_RULES / candidate.name
            if candidate.parts[:1] == ("rules",)
            else SHIPPED_RULES / candidate
        )
        if shipped.is_file():
            return shipped
        if (SHIPPED_RULES / f"{name}.yml").is_file():
            return SHIPPED_RULES / f"{name}.yml"
        return None
    return candidate if candidate.is_file() else None


def _check_targets(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    issues = []
    seen: dict[str, int] = {}
    names = {t.name for t in model.targets}
    for index, target in enumerate(model.targets):
        here = ("targets", index)
        if target.name in seen:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "name")),
                    format_path((*here, "name")),
                    f"target name {target.name!r} is used twice (first at targets[{seen[target.name]}])",
                    "each target needs its own name; incidents and tickets are keyed by it",
                )
            )
        seen.setdefault(target.name, index)
        probe_ids: dict[str, int] = {}
        for p_index, spec in enumerate(target.probe_specs()):
            where = (*here, "probes", p_index)
            if spec.id in probe_ids:
                issues.append(
                    ConfigIssue(
                        located.mark(where),
                        format_path(where),
                        f"target {target.name!r} has two {spec.kind} probes with the same name {spec.id!r}",
                        f"give each a distinct name, e.g. '- {spec.kind}: {{name: {spec.kind}-2, ...}}'",
                    )
                )
            probe_ids.setdefault(spec.id, p_index)
            if spec.probe_class.needs_runner and target.runner_kind == "ssh":
                ssh = model.ssh.merged(target.ssh)
                if not ssh.user:
                    issues.append(
                        ConfigIssue(
                            located.mark(where),
                            format_path(where),
                            f"{spec.kind} on {target.name!r} runs over SSH to {target.host}, but no SSH user is set",
                            "set ssh: {user: ...} at the top or on the target, or transport: local",
                        )
                    )
        if target.via is not None and target.via not in names:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "via")),
                    format_path((*here, "via")),
                    f"via names no target: {target.via!r}",
                    did_you_mean(target.via, names),
                )
            )
        if target.via == target.name:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "via")),
                    format_path((*here, "via")),
                    "a target cannot be its own bastion",
                )
            )
        if target.via is not None and target.via in names and target.via != target.name:
            issues.extend(_check_via(model, target, located, (*here, "via")))
        for d_index, dependency in enumerate(target.depends_on):
            parent = dependency.split("/", 1)[0]
            if parent not in names or parent == target.name:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "depends_on", d_index)),
                        format_path((*here, "depends_on", d_index)),
                        f"depends_on names no other target: {dependency!r}",
                        did_you_mean(parent, names - {target.name}),
                    )
                )
        if target.host:
            _check_host(target.host, located, (*here, "host"), issues)
    integration_names: dict[str, str] = {}
    for role, kind, cfg in model.integrations.entries():
        name = cfg.name or kind
        key = f"{role}:{name}"
        if key in integration_names:
            issues.append(
                ConfigIssue(
                    located.mark(("integrations", role)),
                    format_path(("integrations", role)),
                    f"two {role} integrations are named {name!r}",
                    "give each a distinct name: ...",
                )
            )
        integration_names[key] = kind
        roles = integrations.integration_class(kind).roles
        if role not in roles:
            issues.append(
                ConfigIssue(
                    located.mark(("integrations", role)),
                    format_path(("integrations", role)),
                    f"{kind} cannot be used for {role}",
                    f"{kind} serves: {', '.join(sorted(roles))}",
                )
            )
    return issues


def _check_alert_quality(
    model: WatcherConfig, located: Located, ruleset: RuleSet
) -> list[ConfigIssue]:
    """depends_on without loops; outages and maintenance windows that name real things."""
    from watcher.maintenance import check_windows

    issues = []
    targets = {t.name: t for t in model.targets}
    graph = {
        t.name: [d.split("/", 1)[0] for d in t.depends_on if d.split("/", 1)[0] in targets]
        for t in model.targets
    }
    reported: set[frozenset[str]] = set()
    for index, target in enumerate(model.targets):
        loop = _loop_through(target.name, graph)
        if loop and frozenset(loop) not in reported:
            reported.add(frozenset(loop))
            path = ("targets", index, "depends_on")
            issues.append(
                ConfigIssue(
                    located.mark(path),
                    format_path(path),
                    "depends_on loops: " + " -> ".join(loop),
                    "a parent cannot depend on its own child",
                )
            )
    all_targets = {t.name: t for t in model.targets}
    for checkin in model.checkins:
        all_targets.setdefault(checkin.result_target, checkin.as_target())
    outage_names: set[str] = set()
    for index, spec in enumerate(model.outages):
        here = ("outages", index)
        if spec.name in all_targets or spec.name in outage_names:
            what = "a target" if spec.name in all_targets else "another outage"
            issues.append(
                ConfigIssue(
                    located.mark((*here, "name")),
                    format_path((*here, "name")),
                    f"{what} is also named {spec.name!r}",
                    "give the outage its own name",
                )
            )
        outage_names.add(spec.name)
        if spec.priority not in ruleset.priorities:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "priority")),
                    format_path((*here, "priority")),
                    f"priority {spec.priority} is not defined by any rule pack",
                    "defined: " + ", ".join(sorted(ruleset.priorities)),
                )
            )
        members = [
            name
            for name, t in all_targets.items()
            if (not spec.targets or any(_glob(p, name) for p in spec.targets))
            and all(t.labels.get(k) == v for k, v in spec.labels.items())
        ]
        if len(members) < 2:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    f"outage {spec.name!r} groups {len(members)} target{'s' if len(members) != 1 else ''}; it needs at least 2",
                    "check its labels: and targets: against the targets' labels",
                )
            )
    for index, key, problem, hint in check_windows(model.maintenance, all_targets, outage_names):
        path = ("maintenance", index, key)
        issues.append(ConfigIssue(located.mark(path), format_path(path), problem, hint))
    return issues


def _loop_through(start: str, graph: Mapping[str, list[str]]) -> list[str] | None:
    """The chain start -> ... -> start through depends_on, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for parent in graph.get(node, []):
            if parent == start:
                return [*path, start]
            if parent not in seen:
                seen.add(parent)
                stack.append((parent, [*path, parent]))
    return None


def _check_via(
    model: WatcherConfig, target: Target, located: Located, path: tuple[Any, ...]
) -> list[ConfigIssue]:
    """A bastion must be an SSH host itself, and a chain of them must end somewhere."""
    by_name = {t.name: t for t in model.targets}
    bastion = by_name[target.via]  # type: ignore[index]
    if bastion.host is None or bastion.runner_kind != "ssh":
        return [
            ConfigIssue(
                located.mark(path),
                format_path(path),
                f"via: {bastion.name!r} is not reached over SSH, so it cannot be a bastion",
                f"give {bastion.name!r} a host: (and transport: ssh if that host is local)",
            )
        ]
    chain = [target.name]
    hop: Target | None = bastion
    while hop is not None:
        if hop.name in chain:
            loop = " -> ".join([*chain, hop.name])
            return [
                ConfigIssue(
                    located.mark(path),
                    format_path(path),
                    f"via: loops: {loop}",
                    "end the chain at a host reached directly",
                )
            ]
        chain.append(hop.name)
        hop = by_name.get(hop.via) if hop.via else None
    return []


def _check_audits(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    """Scheduled audits need a mail relay, someone to mail, and names of their own."""
    issues = []
    keys: dict[str, int] = {}
    for index, audit in enumerate(model.audits):
        here = ("audits", index)
        if model.smtp is None:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    "scheduled audits are mailed through the smtp: relay, which is not set",
                    "add smtp: {host: mail.example.org, port: 25, from: watcher@example.org}",
                )
            )
        if not audit.recipients(model.contacts):
            lists = [entry for entry in audit.to if "@" not in entry]
            issues.append(
                ConfigIssue(
                    located.mark((*here, "to")),
                    format_path((*here, "to")),
                    "no address to mail this audit to"
                    + (f": contacts.{lists[0]} has no email" if lists else ""),
                    "give the contacts an email, or write addresses: to: [it-manager@example.org]",
                )
            )
        if audit.key in keys:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    f"two audits run at {audit.key!r}; each needs its own name to remember its last run",
                    "add name: weekly-managers (any name) to one of them",
                )
            )
        keys.setdefault(audit.key, index)
    return issues


def _check_checkins(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    """Each check-in: a schedule, a way to authenticate, a name no other check uses."""
    issues = []
    seen: dict[str, int] = {}
    targets = {t.name: t for t in model.targets}
    for index, checkin in enumerate(model.checkins):
        here = ("checkins", index)

        def issue(
            message: str, hint: str = "", key: str | None = None, here: tuple[Any, ...] = here
        ) -> None:
            path = (*here, key) if key else here
            issues.append(ConfigIssue(located.mark(path), format_path(path), message, hint))

        if checkin.name in seen:
            issue(
                f"two check-ins are named {checkin.name!r} (first at checkins[{seen[checkin.name]}])",
                "",
                "name",
            )
        seen.setdefault(checkin.name, index)
        if (checkin.period is None) == (checkin.schedule is None):
            issue(
                "a check-in needs either period: or schedule:, not both"
                if checkin.period
                else "a check-in needs period: or schedule:",
                'write period: 1d (runs every day) or schedule: "30 2 * * *" (cron), with grace: 2h',
            )
        if checkin.period is not None and checkin.period.total_seconds() <= 0:
            issue("period must be longer than 0", "e.g. period: 1h", "period")
        if checkin.token is None and model.api_token is None:
            issue(
                f"nobody can check in to {checkin.name!r}: it has no token and there is no api_token",
                'add token: "${BACKUP_CHECKIN_TOKEN}" to the check-in, or api_token: at the top',
            )
        if model.listen is None:
            issue(
                "check-ins arrive over HTTP, but listen: is off",
                "set listen: 0.0.0.0:9177 (or the address jobs reach)",
            )
        if checkin.target is not None and checkin.target not in targets:
            issue(
                f"target names no configured target: {checkin.target!r}",
                did_you_mean(checkin.target, targets),
                "target",
            )
        elif checkin.target is not None:
            if checkin.name in {spec.id for spec in targets[checkin.target].probe_specs()}:
                issue(
                    f"target {checkin.target!r} already has a probe named {checkin.name!r}",
                    "rename the check-in; its results sit beside that target's probes",
                    "name",
                )
        elif checkin.name in targets:
            issue(
                f"a target is also named {checkin.name!r}",
                f"add target: {checkin.name} to attach the check-in to it, or rename one",
                "name",
            )
    return issues


def _check_host(
    host: str, located: Located, path: tuple[Any, ...], issues: list[ConfigIssue]
) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            issues.append(
                ConfigIssue(
                    located.mark(path), format_path(path), f"{host!r} is not a host name or address"
                )
            )


def _merge_rules(
    model: WatcherConfig | None, packs: list[tuple[Located, RulePack]]
) -> tuple[RuleSet, list[ConfigIssue]]:
    priorities: dict[str, Any] = {}
    by_name: dict[str, tuple[Rule, Located, int]] = {}
    issues = []
    overrides: list[str] = []
    for located, pack in packs:
        priorities.update(pack.priorities)
        for index, rule in enumerate(pack.rules):
            if isinstance(rule, RuleOverride):
                base = by_name.get(rule.name)
                if base is None:
                    issues.append(_no_rule_to_override(rule, located, index, sorted(by_name)))
                    continue
                # in the place of the rule it changes: the rest of its pack's order stays
                by_name[rule.name] = (rule.apply(base[0]), located, index)
                overrides.append(
                    f"{located.file}: rule {rule.name} changes {', '.join(rule.changed)} "
                    f"of the rule of that name in {base[1].file}"
                )
                continue
            by_name.pop(rule.name, None)  # a later pack's rule of the same name replaces it
            by_name[rule.name] = (rule, located, index)
    configured: dict[str, ProbeSpec] = {}
    target_names: set[str] = set()
    if model is not None:
        configured = {spec.id: spec for t in model.targets for spec in t.probe_specs()}
        configured.update(
            {c.name: ProbeSpec("heartbeat", c.name, ProbeConfig()) for c in model.checkins}
        )
        target_names = {t.name for t in model.targets} | {c.result_target for c in model.checkins}
    configured_kinds = {spec.kind for spec in configured.values()}
    for rule, located, index in by_name.values():
        here = ("rules", index)
        if rule.priority not in priorities:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "priority")),
                    format_path((*here, "priority")),
                    f"priority {rule.priority} is not defined by any rule pack",
                    "defined: "
                    + (", ".join(sorted(priorities)) or "none; list rules/default.yml first"),
                )
            )
        kinds: set[str] = set()
        unresolved = False
        for p_index, selector in enumerate(rule.probe):
            if selector in probes.REGISTRY:
                kinds.add(selector)
            elif selector in configured:
                kinds.add(configured[selector].kind)
            elif model is None:
                unresolved = True  # may name a probe of a target that did not load
            else:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "probe", p_index)),
                        format_path((*here, "probe", p_index)),
                        f"no probe kind or configured probe is called {selector!r}",
                        did_you_mean(selector, [*probes.REGISTRY, *configured]),
                    )
                )
        for t_index, pattern in enumerate(rule.target):
            if not any(_glob(pattern, name) for name in target_names) and target_names:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "target", t_index)),
                        format_path((*here, "target", t_index)),
                        f"target {pattern!r} matches no configured target",
                        did_you_mean(pattern, target_names),
                    )
                )
        known = (
            None
            if unresolved
            else _known_metrics(
                kinds or set(probes.REGISTRY), configured, configured_kinds, restrict=bool(kinds)
            )
        )
        if known is not None:
            allowed = known | RESULT_FIELDS
            for name in sorted(rule.when.names - allowed):
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "when")),
                        format_path((*here, "when")),
                        f"{name!r} is not a metric that {_kinds_text(kinds)} produces",
                        did_you_mean(name, allowed) or "known: " + ", ".join(sorted(known)),
                    )
                )
            for key in ("summary", "group"):
                template = getattr(rule, key)
                if template is None:
                    continue
                for name in sorted(template_fields(template) - allowed - TEMPLATE_BASE_FIELDS):
                    issues.append(
                        ConfigIssue(
                            located.mark((*here, key)),
                            format_path((*here, key)),
                            f"{{{name}}} is not a field this rule's results have",
                            did_you_mean(name, allowed | TEMPLATE_BASE_FIELDS),
                        )
                    )
    rules = [rule for rule, _, _ in by_name.values()]
    ruleset = RuleSet(priorities, rules, site=model.site if model else "?", overrides=overrides)
    return ruleset, issues


def _no_rule_to_override(
    rule: RuleOverride, located: Located, index: int, names: list[str]
) -> ConfigIssue:
    guess = did_you_mean(rule.name, names)
    return ConfigIssue(
        located.mark(("rules", index, "name")),
        format_path(("rules", index, "name")),
        f"rule {rule.name!r} has no when:, so it changes an earlier pack's rule of that "
        "name, and no earlier pack has one",
        (guess + " " if guess.startswith("did you mean") else "")
        + f"rules it can change: {', '.join(names) or 'none (list its pack after default)'}; "
        "or give it when: and priority: to make it a rule of its own",
    )


def _glob(pattern: str, name: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)


def _kinds_text(kinds: set[str]) -> str:
    return "the " + "/".join(sorted(kinds)) + " probe" if kinds else "any probe"


def _known_metrics(
    kinds: set[str],
    configured: Mapping[str, ProbeSpec],
    configured_kinds: set[str],
    *,
    restrict: bool,
) -> set[str] | None:
    """Metric and label names the selected probe kinds can produce; None if unknowable."""
    known: set[str] = set()
    for kind in kinds:
        cls = probes.probe_class(kind)
        known.update(cls.labels)
        if cls.metrics is not None:
            known.update(cls.metrics)
            continue
        specs = [s for s in configured.values() if s.kind == kind]
        if not restrict and not specs:
            continue  # a dynamic kind nobody configured adds no names
        for spec in specs:
            produced = (
                cls.produced_metrics(spec.config) if hasattr(cls, "produced_metrics") else None
            )
            if produced is None:
                return None
            known.update(produced)
        if not specs:
            return None
    return known


# ------------------------------------------------------------------ validation errors


def _validation_issues(
    exc: ValidationError, located: Located, root: type[BaseModel]
) -> list[ConfigIssue]:
    issues = []
    errors = exc.errors(include_url=False)
    for error in errors[:MAX_ISSUES]:
        raw_loc = tuple(error["loc"])
        path = _data_path(raw_loc, located.data)
        kind = error["type"]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        hint = ""
        mark = located.mark(path)
        if kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            mark = located.mark(path, key=True)
            allowed = _allowed_keys(root, raw_loc[:-1])
            message = f"unknown key {key!r}"
            hint = did_you_mean(key, allowed) if allowed else ""
        elif kind == "missing":
            field_name = str(raw_loc[-1])
            mark = located.mark(path)
            message = f"{field_name!r} is required here"
            path = (*path, field_name) if not path or path[-1] != field_name else path
            hint = _example_for(field_name)
        elif kind == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag", "?")
            is_probe = "probes" in raw_loc
            choices = probes.kinds() if is_probe else integrations.kinds()
            message = f"unknown {'probe' if is_probe else 'integration'} kind {tag!r}"
            hint = did_you_mean(str(tag), choices) or "known: " + ", ".join(choices)
            mark = located.mark((*path, tag), key=True)
        elif kind == "union_tag_not_found":
            is_probe = "probes" in raw_loc
            what = "probe" if is_probe else "integration"
            message = f"write each {what} as '- kind: {{options}}', one kind per item"
            hint = (
                "e.g. '- http: {url: \"https://example.org\"}'"
                if is_probe
                else "e.g. '- email: {to: [helpdesk@example.org]}'"
            )
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            message = f"{_short(error.get('input'))} is not allowed"
            hint = f"write one of {expected}"
        elif kind.startswith(("int_", "float_", "bool_", "string_", "list_", "dict_", "model_")):
            # A secret in the wrong shape (basic_auth: "${PW}", headers as one string)
            # must not be printed: name what was written, not its value.
            shown = (
                _kind_of(error.get("input"))
                if kind.startswith(("dict_", "model_")) or _holds_secret(_type_at(root, raw_loc))
                else _short(error.get("input"))
            )
            message = f"{message} (got {shown})"
            if kind.startswith("bool"):
                hint = "write true or false"
            elif kind.startswith(("dict_", "model_")):
                hint = "this takes a mapping of key: value lines"
            elif kind.startswith("list_"):
                hint = "this takes a list: [a, b] or '- a' lines"
        issues.append(ConfigIssue(mark, format_path(path), message, hint))
    # A union reports each member's complaint; the deepest path is the useful one.
    paths = {i.path for i in issues}
    deepest = [
        i
        for i in issues
        if not any(
            p != i.path and (p.startswith(i.path + ".") or p.startswith(i.path + "["))
            for p in paths
        )
    ]
    if len(errors) > MAX_ISSUES:
        path = _data_path(tuple(errors[MAX_ISSUES]["loc"]), located.data)
        deepest.append(
            ConfigIssue(
                located.mark(path),
                format_path(path),
                f"and {len(errors) - MAX_ISSUES} more problems from here on",
                "fix the ones above and run watcher validate again",
            )
        )
    return deepest


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _short(value: Any) -> str:
    # reprlib: an input may be big (a list of ten thousand targets where a string belongs)
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "true/false"}
    names |= {list: "a list", dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _holds_secret(tp: Any, depth: int = 0) -> bool:
    """Whether a value of type ``tp`` is, or contains, a Secret."""
    if tp is None or depth > 8:
        return False
    if tp is Secret:
        return True
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return any(_holds_secret(f.annotation, depth + 1) for f in tp.model_fields.values())
    return any(_holds_secret(arg, depth + 1) for arg in get_args(tp) if not isinstance(arg, str))


def _without_env_values(issue: ConfigIssue, located: Located) -> ConfigIssue:
    """The issue with every value ``${VAR}`` gave at, above or below its path replaced by
    what the file wrote: validate must not print a secret that came from the environment."""
    if issue.mark is None or issue.mark.file != located.file:
        return issue
    text, hint = issue.message, issue.hint
    for env_path, (written, value) in located.from_env.items():
        where = format_path(env_path)
        if issue.path and not (
            issue.path == where
            or where.startswith((issue.path + ".", issue.path + "["))
            or issue.path.startswith((where + ".", where + "["))
        ):
            continue
        # the bare value only when long enough not to match inside unrelated words
        pairs = [(repr(value), repr(written))] + ([(value, written)] if len(value) >= 3 else [])
        for form, shown in pairs:
            text, hint = text.replace(form, shown), hint.replace(form, shown)
    if text == issue.message and hint == issue.hint:
        return issue
    return ConfigIssue(issue.mark, issue.path, text, hint)


def _example_for(field_name: str) -> str:
    examples = {
        "site": "site: acme-pune",
        "name": "name: mail1",
        "url": 'url: "https://example.org/health"',
        "when": 'when: "failed" (or a comparison like "used_percent >= 90")',
        "priority": "priority: P2",
        "port": "port: 443",
        "run": 'run: ["systemctl", "is-active", "nginx"]',
    }
    return f"add {examples[field_name]}" if field_name in examples else ""


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Keeps the parts of a pydantic location that exist in the data (dropping union tags
    and member names), plus a final key the data lacks (a missing field)."""
    path: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        if (
            isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
            or isinstance(node, dict)
            and part in node
        ):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and index == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, for did-you-mean hints."""
    tp, _ = _unwrap(_type_at(root, loc), None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _type_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The type declared at a pydantic error location, or None if it cannot be told."""
    tp: Any = root
    for part in loc:
        tp, was_tag = _unwrap(tp, part)
        if tp is None:
            return None
        if was_tag:
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(part) or next(
                (f for f in tp.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return None
            tp = info.annotation
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
    return tp


def _unwrap(tp: Any, part: Any) -> tuple[Any, bool]:
    """Strips Annotated and Optional; picks a tagged union's member by ``part``."""
    for _ in range(10):
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            tagged = {}
            for arg in args:
                for meta in getattr(arg, "__metadata__", ()):
                    if isinstance(meta, Tag):
                        tagged[meta.tag] = get_args(arg)[0]
            if tagged:
                return tagged.get(part), True
            tp = (
                args[0]
                if len(args) == 1
                else next(
                    (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0]
                )
            )
            continue
        return tp, False
    return tp, False
