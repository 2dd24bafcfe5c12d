"""``heartbeat``: the results of pushed check-ins (``checkins:`` in watcher.yml).

Nothing here reaches out: a job calls ``POST /checkin/<name>`` and ``watcher.web.checkins``
turns its check-ins, or their absence, into results of this kind. The class is
registered so that rules can say ``probe: heartbeat`` and name its metrics, and so that
writing ``- heartbeat:`` under a target is refused with a pointer to ``checkins:``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["HeartbeatProbe", "HeartbeatConfig"]


class HeartbeatConfig(ProbeConfig):
    @model_validator(mode="before")
    @classmethod
    def _pushed(cls, data: Any) -> Any:
        raise ValueError(
            "heartbeats are pushed by the job, not probed: list them under the top-level "
            "checkins: (e.g. checkins: [{name: nightly-backup, period: 1d, grace: 2h}])"
        )


class HeartbeatProbe(Probe):
    kind = "heartbeat"
    Config = HeartbeatConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {"age_s", "late_s", "exit_code", "checkins_total", "failures_total"}
    )

    def check(self, ctx: ProbeContext) -> Outcome:
        return Outcome.error("heartbeats are pushed to /checkin/<name>, never probed")
