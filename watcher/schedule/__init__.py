"""When things run: the probe scheduler and its worker pool, per-check deadlines, and the two
schedule languages (``cron`` for check-ins and maintenance, ``every`` for reports).

May import ``watcher.core`` only (configuration types only for type checking).
"""
