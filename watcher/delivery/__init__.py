"""What leaves the watcher: the durable outbox and its dispatcher, ticket and page text,
the helpdesk acknowledgement poller, the escalation mailer, mail, the shared HTTP client.

May import ``watcher.store``, ``watcher.config``, ``watcher.engine``, ``watcher.schedule`` and
``watcher.core``; the pipeline only for type checking.
"""
