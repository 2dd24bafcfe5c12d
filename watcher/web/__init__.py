"""The HTTP side: the server, /metrics and its Prometheus registry, the status page and its
templates, the daemon's JSON API, check-ins, the maintenance and Alertmanager APIs.

May import the layers below it (delivery, transports, store, config, engine, schedule, core);
the running app only for type checking. Lower layers take ``Metrics`` as a parameter and
name its type only for type checking.
"""
