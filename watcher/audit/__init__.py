"""Server and usage audits: figures, forecasts, HTML and Markdown reports, the ``watcher audit``
command and scheduled audit mail.

May import ``watcher.web`` (its templating) and every layer below it.
"""
