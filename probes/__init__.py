"""Probe kinds, keyed by the name used in watcher.yml.

One module per kind; the table below is the whole registry, so ``smtp:`` in a config
leads a reader straight to ``probes/smtp.py``.
"""

from __future__ import annotations

import importlib
from functools import cache

from probes.base import Probe

__all__ = ["REGISTRY", "probe_class", "kinds"]

REGISTRY: dict[str, str] = {
    "http": "probes.http:HttpProbe",
    "tcp": "probes.tcp:TcpProbe",
    "disk": "probes.disk:DiskProbe",
    "command": "probes.command:CommandProbe",
    "load": "probes.load:LoadProbe",
    "memory": "probes.memory:MemoryProbe",
    "uptime": "probes.uptime:UptimeProbe",
    "service": "probes.service:ServiceProbe",
    "mail_queue": "probes.mail_queue:MailQueueProbe",
    "nagios": "probes.nagios:NagiosProbe",
    "du": "probes.du:DuProbe",
    "smtp": "probes.smtp:SmtpProbe",
    "imap": "probes.imap:ImapProbe",
    "pop3": "probes.pop3:Pop3Probe",
    "agent_checkins": "probes.agent_checkins:AgentCheckinsProbe",
    "heartbeat": "probes.heartbeat:HeartbeatProbe",
    "alertmanager": "probes.alertmanager:AlertmanagerProbe",
}


def kinds() -> list[str]:
    return sorted(REGISTRY)


@cache
def probe_class(kind: str) -> type[Probe]:
    module_name, _, class_name = REGISTRY[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.kind != kind:
        raise RuntimeError(f"{REGISTRY[kind]} declares kind {cls.kind!r}, registered as {kind!r}")
    return cls
