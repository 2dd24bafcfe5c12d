"""The running daemon: wiring a loaded config into store, pipeline, outbox, scheduler and web,
and the pipeline that turns results into incidents and outbox rows in one transaction.

May import every layer but ``watcher.cli``.
"""
