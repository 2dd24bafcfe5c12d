"""Incident logic as pure functions of (incident, result, rules, now): the tracker and its
escalation steps, suppression, site-wide outages, flapping, maintenance windows, SLA clocks.

May import ``watcher.schedule`` and ``watcher.core``; never the store, the config loader or I/O.
"""
