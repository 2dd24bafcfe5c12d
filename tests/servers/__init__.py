"""Real servers on loopback for the test suite (OpenSSH, Postfix+Dovecot, aiosmtpd, Request
Tracker 5, Prometheus, a controllable HTTP(S) server, a tmpfs) and their pytest fixtures.

Load the fixtures with ``pytest_plugins = ["tests.servers.fixtures"]``; one module per server:
base (ports, polling, processes, cleanup), certs, sshd (+ bastion pair), disk, mail, rt,
prometheus, httpd.
"""
