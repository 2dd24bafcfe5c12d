"""Real Request Tracker 5 (Debian request-tracker5 + rt5-db-sqlite + rt5-standalone) for the
ticketer tests, with its own site config and a fresh SQLite database in a temp dir.

Nothing under /etc is touched: RT reads ``$ENV{RT_SITE_CONFIG}`` instead of
/etc/request-tracker5/RT_SiteConfig.pm and ``$ENV{RT_SITE_CONFIG_DIR}`` instead of the
RT_SiteConfig.d directories (see RT::Config::LoadConfig), so we point the first at our file
and the second at an empty directory (the Debian snippets there would set the package's
database and ``$WebPath "/rt"``). Mason's cache also goes to the temp dir.

Set-up (measured on a 2-core Debian 12 VM): ``rt-setup-database --action init`` on a new
SQLite file ~1.7 s, the Perl set-up below (root password, custom field "Watcher
Fingerprint" applied to queue General, an engineer user, a REST 2 auth token) ~1.5 s,
``rt-server --max-workers 2`` ready ~1.5 s: about 5 s from nothing to ready; a restart on the
same database ~1.5 s. Installing the Debian packages themselves takes ~18 s (COMPONENTS.md).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from .base import LOOPBACK, ManagedProcess, free_port, require_binary, run, wait_for_http

RT_SERVER = "/usr/share/request-tracker5/libexec/rt-server"
RT_SETUP_DATABASE = "/usr/sbin/rt-setup-database-5"
RT_LIB = "/usr/share/request-tracker5/lib"

ROOT_PASSWORD = "watcher-rt-root-pw"
ENGINEER = "engineer"
ENGINEER_PASSWORD = "watcher-rt-engineer-pw"
CF_NAME = "Watcher Fingerprint"

# Run through RT's Perl API (REST 2 cannot apply a custom field to a queue). Prints
# KEY=VALUE lines that RequestTracker parses.
_SETUP_PL = r"""
use strict;
use warnings;
use lib '__RT_LIB__';
use RT;
RT::LoadConfig();
RT::Init();

my ($root_pw, $cf_name, $queue_name, $eng_name, $eng_pw) = @ARGV;

my $root = RT::User->new(RT->SystemUser);
$root->Load('root') or die "no root user";
my ($ok, $msg) = $root->SetPassword($root_pw);
die "root password: $msg" unless $ok;

my $queue = RT::Queue->new(RT->SystemUser);
$queue->Load($queue_name);
die "no queue $queue_name" unless $queue->id;

my $cf = RT::CustomField->new(RT->SystemUser);
$cf->LoadByName(Name => $cf_name, LookupType => RT::Ticket->CustomFieldLookupType);
unless ($cf->id) {
    ($ok, $msg) = $cf->Create(
        Name        => $cf_name,
        Type        => 'Freeform',
        MaxValues   => 1,
        LookupType  => RT::Ticket->CustomFieldLookupType,
        Description => 'watcher incident fingerprint',
    );
    die "custom field: $msg" unless $ok;
}
unless ($cf->IsAdded($queue->id)) {
    ($ok, $msg) = $cf->AddToObject($queue);
    die "apply custom field: $msg" unless $ok;
}

# A privileged user that tests make "take" tickets, like an engineer on call.
my $eng = RT::User->new(RT->SystemUser);
$eng->Load($eng_name);
unless ($eng->id) {
    ($ok, $msg) = $eng->Create(Name => $eng_name, EmailAddress => "$eng_name\@localhost",
                               Privileged => 1, Password => $eng_pw);
    die "engineer: $msg" unless $ok;
}
for my $right (qw(OwnTicket ShowTicket SeeQueue ModifyTicket ReplyToTicket CommentOnTicket SeeCustomField ModifyCustomField)) {
    $eng->PrincipalObj->GrantRight(Right => $right, Object => $RT::System);
}

my $token = RT::AuthToken->new(RT::CurrentUser->new($root));
my ($id, $tmsg, $auth) = $token->Create(Owner => $root->id, Description => 'watcher tests');
die "auth token: $tmsg" unless $id;

print "CF_ID=", $cf->id, "\n";
print "QUEUE_ID=", $queue->id, "\n";
print "TOKEN=$auth\n";
"""


class RequestTracker:
    """RT 5 on ``url`` with REST 2 at ``rest_url``; basic auth ``user``/``password`` or ``token``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        queue: str = "General",
        cf_name: str = CF_NAME,
        password: str = ROOT_PASSWORD,
    ) -> None:
        require_binary(RT_SERVER)
        require_binary(RT_SETUP_DATABASE)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.user = "root"
        self.password = password
        self.queue = queue
        self.cf_name = cf_name
        self.engineer = ENGINEER
        self.engineer_password = ENGINEER_PASSWORD
        self.token: str = ""
        self.cf_id: int = 0
        self.queue_id: int = 0
        self.db_path = self.workdir / "rt.sqlite"
        self.site_config = self.workdir / "RT_SiteConfig.pm"
        self.site_config_dir = self.workdir / "RT_SiteConfig.d"  # stays empty on purpose
        self.mason_dir = self.workdir / "mason_data"
        self.log_path = self.workdir / "rt-server.log"
        self.outgoing_mail_dir = self.workdir / "outgoing-mail"  # $MailCommand 'testfile'
        self._process: ManagedProcess | None = None
        self._initialised = False
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.url}/REST/2.0"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points RT tools at this instance (for rt-* commands in tests)."""
        return {
            **os.environ,
            "RT_SITE_CONFIG": str(self.site_config),
            "RT_SITE_CONFIG_DIR": str(self.site_config_dir),
            # 'testfile' writes outgoing mail under TMPDIR instead of calling sendmail.
            "TMPDIR": str(self.outgoing_mail_dir),
        }

    def _write_config(self) -> None:
        self.site_config_dir.mkdir(exist_ok=True)
        self.mason_dir.mkdir(exist_ok=True)
        self.outgoing_mail_dir.mkdir(exist_ok=True)

        def q(value: str) -> str:  # Perl single-quoted string
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

        settings = {
            "$rtname": q("watcher-test"),
            "$Organization": q("watcher.test"),
            "$CorrespondAddress": q("rt@localhost"),
            "$CommentAddress": q("rt-comment@localhost"),
            "$DatabaseType": q("SQLite"),
            "$DatabaseName": q(str(self.db_path)),
            "$WebPath": '""',
            "$WebDomain": q(self.host),
            "$WebPort": str(self.port),
            "$WebBaseURL": q(self.url),
            "$LogToSyslog": "undef",
            "$LogToFile": "undef",
            "$LogToSTDERR": q("warning"),
            "$MailCommand": q("testfile"),
            "$MasonDataDir": q(str(self.mason_dir)),
            "$Timezone": q("UTC"),
            # Internal HTML->text converter is fine here; say so, or RT warns on every start.
            "$HTMLFormatter": q("core"),
        }
        body = "".join(f"Set({k}, {v});\n" for k, v in settings.items())
        self.site_config.write_text(
            "# watcher test instance, written by tests/servers/rt.py\n" + body + "1;\n"
        )

    def _initialise(self) -> None:
        """Create the database and the objects the tests rely on (once per instance)."""
        env = self.env
        run([RT_SETUP_DATABASE, "--action", "init", "--skip-create"], env=env, timeout=120)
        script = self.workdir / "setup.pl"
        script.write_text(_SETUP_PL.replace("__RT_LIB__", RT_LIB))
        out = run(
            [
                "perl",
                str(script),
                self.password,
                self.cf_name,
                self.queue,
                self.engineer,
                self.engineer_password,
            ],
            env=env,
            timeout=120,
        ).stdout
        values = dict(re.findall(r"^(\w+)=(.*)$", out, re.M))
        self.token = values["TOKEN"]
        self.cf_id = int(values["CF_ID"])
        self.queue_id = int(values["QUEUE_ID"])
        self._initialised = True

    # -- control
    def start(self, timeout: float = 60.0) -> RequestTracker:
        """Start on the same port and database (initialising the database the first time)."""
        if self._process is not None and self._process.running():
            return self
        if not self._initialised:
            self._initialise()
        self._process = ManagedProcess(
            [RT_SERVER, "--listen", f"{self.host}:{self.port}", "--max-workers", "2"],
            self.log_path,
            name=f"rt-server:{self.port}",
            env=self.env,
            cwd=self.workdir,
        )
        self._process.start()
        wait_for_http(f"{self.url}/REST/2.0/", timeout, process=self._process)
        return self

    def stop(self) -> None:
        """Stop rt-server and its workers (the database stays)."""
        if self._process is not None:
            self._process.stop()

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- REST 2 helpers for tests (they inspect state; watcher has its own client)
    def session(self, *, token: bool = False) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # no proxies or ~/.netrc for loopback calls
        if token:
            s.headers["Authorization"] = f"token {self.token}"
        else:
            s.auth = (self.user, self.password)
        s.headers["Content-Type"] = "application/json"
        return s

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.session() as s:
            resp = s.request(method, self.rest_url + path, timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def create_ticket(
        self, subject: str, *, fingerprint: str | None = None, text: str = "", **fields: Any
    ) -> int:
        """Create a ticket in ``queue`` (tests use it to set up pre-existing incidents)."""
        payload: dict[str, Any] = {"Queue": self.queue, "Subject": subject, **fields}
        if text:
            payload["Content"] = text
        if fingerprint is not None:
            payload["CustomFields"] = {self.cf_name: fingerprint}
        return int(self._request("POST", "/ticket", data=json.dumps(payload))["id"])

    def tickets(
        self, query: str, fields: str = "Subject,Status,Owner,Queue,CustomFields"
    ) -> list[dict[str, Any]]:
        """Search with TicketSQL (``GET /tickets?query=``), e.g. ``CF.{Watcher Fingerprint}='x'``."""
        params = urllib.parse.urlencode({"query": query, "fields": fields, "per_page": 100})
        return list(self._request("GET", f"/tickets?{params}")["items"])

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/ticket/{ticket_id}"))

    def cf_value(self, ticket_id: int) -> str | None:
        """The ticket's "Watcher Fingerprint" value."""
        for cf in self.ticket(ticket_id).get("CustomFields", []):
            if cf.get("name") == self.cf_name:
                values = cf.get("values") or []
                return values[0] if values else None
        return None

    def history(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's transactions (Type, Field, OldValue, NewValue, Creator, Created, Data)."""
        params = "fields=Type,Field,OldValue,NewValue,Creator,Created,Data&per_page=100"
        return list(self._request("GET", f"/ticket/{ticket_id}/history?{params}")["items"])

    def comments(
        self, ticket_id: int, types: tuple[str, ...] = ("Comment", "Correspond")
    ) -> list[str]:
        """Text of the ticket's comments/replies, oldest first (add "Create" for the description)."""
        out: list[str] = []
        for txn in self.history(ticket_id):
            if txn.get("Type") not in types:
                continue
            atts = self._request(
                "GET", f"/transaction/{txn['id']}/attachments?fields=ContentType,Content"
            )
            for att in atts.get("items", []):
                # In a collection with fields=, REST 2 returns Content as text (the single
                # /attachment/N endpoint would give base64).
                if att.get("ContentType", "").startswith("text/") and att.get("Content"):
                    out.append(str(att["Content"]))
        return out

    def comment(self, ticket_id: int, text: str) -> None:
        self._request(
            "POST",
            f"/ticket/{ticket_id}/comment",
            data=json.dumps({"Content": text, "ContentType": "text/plain"}),
        )

    def set_status(self, ticket_id: int, status: str) -> None:
        """e.g. ``resolved`` (an engineer closes it) or ``open``."""
        self._request("PUT", f"/ticket/{ticket_id}", data=json.dumps({"Status": status}))

    def take(self, ticket_id: int, owner: str = ENGINEER) -> None:
        """Set the Owner, as an engineer taking the ticket would."""
        self._request("PUT", f"/ticket/{ticket_id}", data=json.dumps({"Owner": owner}))

    def __repr__(self) -> str:
        return f"<RequestTracker {self.url} running={self.running()}>"
