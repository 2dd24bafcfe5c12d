"""Real mail servers for the pager/ticketer/mail-probe tests.

:class:`MailServer` is a private Postfix instance (``postfix -c DIR``, its own main.cf,
master.cf, queue and data directories, nothing in /etc/postfix touched) plus a private
Dovecot (``dovecot -F -c DIR/dovecot.conf`` with its own base_dir and state_dir), all on free
127.0.0.1 ports:

* ``smtp_port``: SMTP with STARTTLS offered (AUTH after STARTTLS, optional);
* ``submission_port``: STARTTLS required, AUTH required (Dovecot SASL);
* ``smtps_port``: implicit TLS;
* ``imap_port`` (plain + STARTTLS), ``imaps_port``, ``pop3_port`` (plain + STLS), ``pop3s_port``.

Mail to ``<mail_user>@localhost`` is delivered by Postfix's local(8) into a Maildir under
the temp dir, which Dovecot serves. Nothing can leave the machine: relaying is refused at RCPT
and the default/relay transports are ``error``. Certificates come from a private CA
(``ca_path``); ``use_expired_cert()`` swaps in an expired one. Start-up: ~0.3 s for both
(``postfix start`` dominates; it was ~1.8 s until main.cf is backdated, see _age_config);
a message is in the mailbox ~0.05-0.1 s after sending. Stopping Dovecot takes ~1.1 s.

:class:`SmtpSink` is a light aiosmtpd server that records what it receives (~10 ms).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import os
import pwd
import signal
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .base import (
    LOOPBACK,
    ManagedProcess,
    ServerStartError,
    descendants,
    free_port,
    register_cleanup,
    require_binary,
    require_root,
    run,
    tail_file,
    unregister_cleanup,
    wait_for_port,
    wait_until,
)
from .certs import CertPair, TestPKI, make_test_pki

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
DOVECOT = "/usr/sbin/dovecot"
MAIL_USER = "watchermail"
MAIL_PASSWORD = "watcher-Mail-pw-1"

# Every service chroot=n: a chroot would need copies of /etc/services, resolv.conf, etc.
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{host}:{smtp_port} inet n - n - - smtpd
{host}:{submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
{host}:{smtps_port} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
"""


# --------------------------------------------------------------------------- user


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str
    uid: int
    gid: int

    @property
    def address(self) -> str:
        return f"{self.name}@localhost"


def ensure_mail_user(name: str = MAIL_USER, password: str = MAIL_PASSWORD) -> MailUser:
    """Create the local mail recipient (no login shell) and set its password."""
    require_root("creating the mail test user")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        run(
            [
                "useradd",
                "--create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "watcher test mail",
                name,
            ]
        )
        pw = pwd.getpwnam(name)
    run(["chpasswd"], input=f"{name}:{password}\n")
    return MailUser(name, password, pw.pw_uid, pw.pw_gid)


# --------------------------------------------------------------------------- MailServer


class MailServer:
    """Private Postfix + Dovecot instance in ``workdir`` (see module docstring)."""

    def __init__(
        self, workdir: Path, *, pki: TestPKI | None = None, user: MailUser | None = None
    ) -> None:
        require_binary(POSTFIX)
        require_binary(DOVECOT)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # Postfix/Dovecot workers (unprivileged) must traverse it
        self.host = LOOPBACK
        self.user = user or ensure_mail_user()
        self.pki = pki or make_test_pki(self.workdir / "tls")
        self.smtp_port, self.submission_port, self.smtps_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        )
        self.postfix_dir = self.workdir / "postfix"
        self.queue_dir = self.workdir / "postfix-queue"
        self.data_dir = self.workdir / "postfix-data"
        self.postfix_log = self.workdir / "postfix.log"
        self.spool_dir = self.workdir / "spool"
        self.maildir = self.spool_dir / self.user.name
        self.dovecot_dir = self.workdir / "dovecot"
        self.dovecot_conf = self.dovecot_dir / "dovecot.conf"
        self.dovecot_run = self.workdir / "dovecot-run"
        self.dovecot_log = self.workdir / "dovecot.log"
        self._cert: CertPair = self.pki.valid
        self.delivery_broken = False
        self._postfix = ManagedProcess(
            [POSTFIX, "-c", str(self.postfix_dir), "start"],
            self.workdir / "postfix-start.log",
            name=f"postfix:{self.smtp_port}",
            pidfile=self.queue_dir / "pid" / "master.pid",  # the master daemonizes
        )
        self._dovecot = ManagedProcess(
            [DOVECOT, "-F", "-c", str(self.dovecot_conf)],
            self.workdir / "dovecot-stdout.log",
            name=f"dovecot:{self.imap_port}",
        )
        self._write_maildir()
        self._write_postfix_config()
        self._write_dovecot_config()

    # -- attributes
    @property
    def ca_path(self) -> Path:
        return self.pki.ca.cert_path

    @property
    def cert_path(self) -> Path:
        return self._cert.cert_path

    @property
    def expired_cert_path(self) -> Path:
        return self.pki.expired.cert_path

    @property
    def address(self) -> str:
        """The mailbox the server delivers to and Dovecot serves."""
        return self.user.address

    @property
    def password(self) -> str:
        return self.user.password

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (verifies hostname 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    # -- configuration
    def _write_maildir(self) -> None:
        # local(8) delivers as the recipient; give it a Maildir it owns.
        self.spool_dir.mkdir(exist_ok=True)
        self.spool_dir.chmod(0o755)
        for sub in ("", "cur", "new", "tmp"):
            d = self.maildir / sub
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, self.user.uid, self.user.gid)
            d.chmod(0o700)

    def _postconf(self, *settings: str) -> None:
        run([POSTCONF, "-c", str(self.postfix_dir), "-e", *settings])
        self._age_config()

    def _age_config(self) -> None:
        # Postfix programs that find main.cf/master.cf modified within the last second wait
        # (in 0.3 s steps) until it is older, in case it is half-written; that added ~1-2 s
        # to every start, reload and flush. Our writes are complete, so backdate them.
        old = time.time() - 10
        for name in ("main.cf", "master.cf"):
            os.utime(self.postfix_dir / name, (old, old))

    def _write_postfix_config(self) -> None:
        self.postfix_dir.mkdir(exist_ok=True)
        # Postfix chdirs into the queue before anything else; `postfix start` creates the
        # subdirectories (post-install create-missing) but not the queue directory itself.
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)
        self.postfix_log.touch()
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "localhost",
            "mydomain": "localdomain",
            "myorigin": "localhost",
            "mydestination": "localhost, localhost.localdomain",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # Nothing leaves this machine: no relaying, and anything non-local bounces.
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "default_transport": "error:watcher test instance delivers locally only",
            "relay_transport": "error:watcher test instance delivers locally only",
            "relayhost": "",
            # No /etc/aliases dependency: a missing aliases.db would defer local delivery.
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "unix:passwd.byname",
            "mail_spool_directory": f"{self.spool_dir}/",  # trailing slash = Maildir
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "smtputf8_enable": "no",
            "maillog_file": str(self.postfix_log),
            "maillog_file_prefixes": str(self.workdir),  # Postfix only logs under listed prefixes
            "smtpd_banner": "$myhostname ESMTP watcher-test",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(self._cert.cert_path),
            "smtpd_tls_key_file": str(self._cert.key_path),
            "smtpd_tls_auth_only": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.dovecot_run / "auth-postfix"),
            "smtpd_sasl_auth_enable": "yes",
            "smtp_tls_security_level": "none",
            "multi_instance_wrapper": "",
            # Tests retry deliveries by flushing; keep the backoff short anyway.
            "queue_run_delay": "10s",
            "minimal_backoff_time": "10s",
            "maximal_backoff_time": "60s",
        }
        (self.postfix_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.postfix_dir / "master.cf").write_text(
            _MASTER_CF.format(
                host=self.host,
                smtp_port=self.smtp_port,
                submission_port=self.submission_port,
                smtps_port=self.smtps_port,
            )
        )
        self._age_config()

    def _write_dovecot_config(self) -> None:
        self.dovecot_dir.mkdir(exist_ok=True)
        state = self.workdir / "dovecot-state"
        state.mkdir(exist_ok=True)
        self.dovecot_log.touch()
        conf = f"""\
# Private instance: own base_dir/state_dir, so it never meets the system Dovecot.
base_dir = {self.dovecot_run}
state_dir = {state}
instance_name = watcher-{self.imap_port}
protocols = imap pop3
listen = {self.host}
log_path = {self.dovecot_log}
info_log_path = {self.dovecot_log}
ssl = yes
ssl_cert = <{self._cert.cert_path}
ssl_key = <{self._cert.key_path}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.spool_dir}/%u
first_valid_uid = 1
passdb {{
  driver = shadow
}}
userdb {{
  driver = passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"""
        self.dovecot_conf.write_text(conf)

    # -- control
    def start(self) -> MailServer:
        """Start Dovecot first (Postfix's SASL goes through it), then Postfix."""
        self.start_dovecot()
        self.start_postfix()
        return self

    def stop(self) -> None:
        self.stop_postfix()
        self.stop_dovecot()

    def start_postfix(self, timeout: float = 30.0) -> None:
        if self._postfix.running():
            return
        self._postfix.start()
        # The `postfix start` command returns once the master is initialised.
        assert self._postfix.popen is not None
        try:
            rc = self._postfix.popen.wait(timeout=timeout)
        except Exception:
            rc = None
        if rc != 0:
            self._postfix.stop()
            raise ServerStartError(
                f"postfix start exited {rc}\n{self._postfix.log_tail()}\n--- {self.postfix_log} ---\n"
                f"{tail_file(self.postfix_log)}"
            )
        for port in (self.smtp_port, self.submission_port, self.smtps_port):
            wait_for_port(
                self.host, port, timeout, process=self._postfix, log_path=self.postfix_log
            )

    def stop_postfix(self) -> None:
        """Stop the Postfix master and all its processes (SMTP connections are refused)."""
        self._postfix.stop()

    def start_dovecot(self, timeout: float = 15.0) -> None:
        if self._dovecot.running():
            return
        self._dovecot.start()
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            wait_for_port(
                self.host, port, timeout, process=self._dovecot, log_path=self.dovecot_log
            )

    def stop_dovecot(self) -> None:
        self._dovecot.stop()

    def postfix_running(self) -> bool:
        return self._postfix.running()

    def dovecot_running(self) -> bool:
        return self._dovecot.running()

    def _reload_postfix(self) -> None:
        # What `postfix reload` does, minus its ~1.5 s integrity check: HUP the master,
        # which re-reads main.cf/master.cf and restarts its services.
        pid = self._postfix.pid
        if pid and self._postfix.running():
            os.kill(pid, signal.SIGHUP)
            time.sleep(0.2)  # the master handles HUP asynchronously

    def _qmgr_pids(self) -> set[int]:
        master = self._postfix.pid
        found = set()
        for pid in descendants(master) if master else []:
            with contextlib.suppress(OSError):
                if b"qmgr" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found

    def _reload_delivery(self) -> None:
        """Reloads and waits until the queue manager really restarted with the new
        setting: on a loaded machine that takes longer than the master's HUP."""
        before = self._qmgr_pids()
        self._reload_postfix()
        if self._postfix.running():
            wait_until(
                lambda: (now := self._qmgr_pids()) and not (now & before), 15, "qmgr to restart"
            )

    def break_delivery(self) -> None:
        """Postfix keeps accepting mail (250) but holds it in the deferred queue."""
        self._postconf("defer_transports = local")
        self.delivery_broken = True
        self._reload_delivery()

    def fix_delivery(self) -> None:
        """Undo break_delivery and flush, so the queued mail is delivered now."""
        self._postconf("defer_transports =")
        self.delivery_broken = False
        self._reload_delivery()
        if self._postfix.running():
            # Ask the queue manager to retry deferred mail now, not at queue_run_delay.
            run([POSTQUEUE, "-c", str(self.postfix_dir), "-f"])

    def use_self_signed_cert(self) -> None:
        """Serve a certificate no CA vouches for, on SMTP, IMAP and POP3."""
        self._set_cert(self.pki.self_signed)

    def _set_cert(self, cert: CertPair) -> None:
        self._cert = cert
        self._postconf(
            f"smtpd_tls_cert_file = {cert.cert_path}", f"smtpd_tls_key_file = {cert.key_path}"
        )
        self._write_dovecot_config()
        self._reload_postfix()
        if self._dovecot.running() and self._dovecot.pid:
            os.kill(self._dovecot.pid, signal.SIGHUP)  # Dovecot re-reads its config on HUP
        # Both reload asynchronously, and slower on a loaded machine: wait until new
        # connections are really served the new certificate.
        want = cert.cert.public_bytes(serialization.Encoding.DER)
        if self._postfix.running():
            wait_until(lambda: self._served_cert(self.smtps_port) == want, 15, "postfix's cert")
        if self._dovecot.running():
            wait_until(lambda: self._served_cert(self.imaps_port) == want, 15, "dovecot's cert")

    def _served_cert(self, port: int) -> bytes | None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((self.host, port), timeout=2) as raw,
                context.wrap_socket(raw) as tls,
            ):
                return tls.getpeercert(binary_form=True)
        except OSError:
            return None

    def use_expired_cert(self) -> None:
        """Serve the expired certificate (signed by the same CA) on SMTP, IMAP and POP3."""
        self._set_cert(self.pki.expired)

    def use_valid_cert(self) -> None:
        self._set_cert(self.pki.valid)

    # -- inspection
    def queued(self) -> int:
        """Messages in the Postfix queue (accepted but not yet delivered)."""
        count = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(self.queue_dir / sub):
                count += len(files)
        return count

    def send(
        self,
        to: str | None = None,
        subject: str = "test",
        body: str = "hello",
        sender: str = "watcher@localhost",
        *,
        port: int | None = None,
        starttls: bool = True,
    ) -> None:
        """Send one message over SMTP (STARTTLS verified against the test CA)."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to or self.address, subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, port or self.smtp_port, timeout=10) as smtp:
            if starttls:
                smtp.starttls(context=self.ssl_context())
            smtp.send_message(msg)

    def messages(self, mailbox: str = "INBOX") -> list[Message]:
        """All messages in the user's mailbox, read over IMAP with STARTTLS."""
        with imaplib.IMAP4(self.host, self.imap_port, timeout=10) as imap:
            imap.starttls(ssl_context=self.ssl_context())
            imap.login(self.user.name, self.user.password)
            imap.select(mailbox, readonly=True)
            _, data = imap.search(None, "ALL")
            out: list[Message] = []
            for num in data[0].split():
                _, parts = imap.fetch(num, "(RFC822)")
                raw = parts[0][1]  # type: ignore[index]
                out.append(email.message_from_bytes(raw, policy=email.policy.default))
            imap.logout()
        return out

    def wait_for_messages(self, count: int = 1, timeout: float = 10.0) -> list[Message]:
        """Poll the mailbox until it holds at least ``count`` messages."""
        return wait_until(
            lambda: (m := self.messages()) and len(m) >= count and m,
            timeout,
            f"{count} message(s) in {self.address}",
        )  # type: ignore[return-value]

    def clear_mailbox(self) -> None:
        """Delete all delivered mail (between tests sharing the session-scoped server)."""
        for sub in ("cur", "new", "tmp"):
            for f in (self.maildir / sub).iterdir():
                f.unlink()

    def reset(self) -> MailServer:
        """Back to the default state for the next test sharing this instance: both daemons
        running, delivery working, the valid certificate, an empty mailbox."""
        if self._cert is not self.pki.valid:
            self.use_valid_cert()
        self.start_dovecot()
        self.start_postfix()
        if self.delivery_broken:
            self.fix_delivery()
        # Let mail still in flight from the previous test land before emptying the box.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self.queued() == 0, 5, "the Postfix queue to drain")
        self.clear_mailbox()
        return self

    def __repr__(self) -> str:
        return (
            f"<MailServer smtp={self.smtp_port} imap={self.imap_port} "
            f"postfix={self._postfix.running()} dovecot={self._dovecot.running()}>"
        )


# --------------------------------------------------------------------------- SmtpSink


@dataclass(frozen=True)
class ReceivedMessage:
    """One message an :class:`SmtpSink` accepted."""

    mail_from: str
    rcpt_tos: list[str]
    subject: str
    body: str
    headers: dict[str, str]
    raw: bytes
    peer: tuple[str, int] | None = None
    auth_login: str | None = None
    tls: bool = False

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


def _text_body(msg: Message) -> str:
    part = msg.get_body(preferencelist=("plain", "html")) if hasattr(msg, "get_body") else msg
    if part is None:
        return ""
    try:
        return str(part.get_content())  # type: ignore[union-attr]
    except (KeyError, LookupError, AttributeError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.sink.reject_rcpt:
            return self.sink.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.sink.reject_data:
            return self.sink.reject_data
        raw = envelope.original_content or envelope.content
        raw = raw if isinstance(raw, bytes) else raw.encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        # With an authenticator, aiosmtpd keeps what it returned/was given in auth_data.
        auth = getattr(session, "auth_data", None)
        login = getattr(auth, "login", None)
        self.sink._record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                subject=str(msg.get("Subject", "")).strip(),
                body=_text_body(msg),
                headers={k: str(v) for k, v in msg.items()},
                raw=raw,
                peer=tuple(session.peer[:2]) if session.peer else None,  # type: ignore[arg-type]
                auth_login=login.decode() if isinstance(login, bytes) else login,
                tls=session.ssl is not None,
            )
        )
        return "250 Message accepted"


class SmtpSink:
    """aiosmtpd server on a fixed free port that records messages.

    ``tls``: offer STARTTLS with that certificate (``require_starttls`` to insist);
    ``auth=(user, password)``: offer AUTH PLAIN/LOGIN (only after STARTTLS unless
    ``auth_require_tls=False``) and require it. ``reject_rcpt`` / ``reject_data``: answer
    with that reply instead (e.g. ``"451 4.3.0 try again later"``) for failure tests.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: CertPair | None = None,
        require_starttls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
    ) -> None:
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()  # Controller(port=0) does not work
        self.tls = tls
        self.require_starttls = require_starttls
        self.auth = auth
        self.auth_require_tls = auth_require_tls
        self.messages: list[ReceivedMessage] = []
        self.reject_rcpt: str | None = None
        self.reject_data: str | None = None
        self._lock = threading.Lock()
        self._controller: object | None = None
        self._cleanup_handle: int | None = None

    def _record(self, msg: ReceivedMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def _authenticator(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            self.auth is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> SmtpSink:
        """Start listening (again, on the same port after stop())."""
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return self
        kwargs: dict[str, object] = {}
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls.cert_path, self.tls.key_path)
            kwargs.update(tls_context=ctx, require_starttls=self.require_starttls)
        if self.auth is not None:
            kwargs.update(
                authenticator=self._authenticator,
                auth_required=True,
                auth_require_tls=self.auth_require_tls,
            )
        controller = Controller(
            _SinkHandler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10,
            server_hostname="localhost",
            **kwargs,
        )
        controller.start()
        self._controller = controller
        if self._cleanup_handle is None:
            self._cleanup_handle = register_cleanup(self.stop)
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()  # type: ignore[attr-defined]
        if self._cleanup_handle is not None:
            unregister_cleanup(self._cleanup_handle)
            self._cleanup_handle = None

    def running(self) -> bool:
        return self._controller is not None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        def enough() -> list[ReceivedMessage] | None:
            with self._lock:
                return list(self.messages) if len(self.messages) >= count else None

        return wait_until(enough, timeout, f"{count} message(s) at the SMTP sink")  # type: ignore[return-value]


__all__: Sequence[str] = (
    "MAIL_PASSWORD",
    "MAIL_USER",
    "MailServer",
    "MailUser",
    "ReceivedMessage",
    "SmtpSink",
    "ensure_mail_user",
)
