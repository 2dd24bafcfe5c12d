"""Ticketing and paging integrations, keyed by the name used in watcher.yml.

The table is the whole registry: ``request_tracker:`` in a config leads a reader to
``integrations/request_tracker.py``.
"""

from __future__ import annotations

import importlib
from functools import cache

from integrations.base import Integration

__all__ = ["REGISTRY", "integration_class", "kinds"]

REGISTRY: dict[str, str] = {
    "email": "integrations.email:EmailIntegration",
    "webhook": "integrations.webhook:WebhookIntegration",
    "request_tracker": "integrations.request_tracker:RequestTrackerIntegration",
    "jira": "integrations.jira:JiraIntegration",
    "zammad": "integrations.zammad:ZammadIntegration",
    "redmine": "integrations.redmine:RedmineIntegration",
    "servicenow": "integrations.servicenow:ServiceNowIntegration",
    "jira_service_management": "integrations.jira_service_management:JiraServiceManagementIntegration",
    "zendesk": "integrations.zendesk:ZendeskIntegration",
    "freshservice": "integrations.freshservice:FreshserviceIntegration",
    "halopsa": "integrations.halopsa:HaloPSAIntegration",
    "connectwise": "integrations.connectwise:ConnectWiseIntegration",
    "autotask": "integrations.autotask:AutotaskIntegration",
    "pagerduty": "integrations.pagerduty:PagerDutyIntegration",
    "opsgenie": "integrations.opsgenie:OpsgenieIntegration",
    "twilio": "integrations.twilio:TwilioIntegration",
    "apprise": "integrations.apprise:AppriseIntegration",
    "alertmanager": "integrations.alertmanager:AlertmanagerIntegration",
}


def kinds() -> list[str]:
    return sorted(REGISTRY)


@cache
def integration_class(kind: str) -> type[Integration]:
    module_name, _, class_name = REGISTRY[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.kind != kind:
        raise RuntimeError(f"{REGISTRY[kind]} declares kind {cls.kind!r}, registered as {kind!r}")
    return cls
