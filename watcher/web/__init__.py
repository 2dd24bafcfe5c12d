"""The HTTP side: the server, the status page and its templates, check-ins, the maintenance
and Alertmanager APIs.

May import the layers below it (delivery, transports, store, config, engine, schedule, core);
the running app only for type checking.
"""
