"""Real Redmine 5 (Debian ``redmine`` + ``redmine-sqlite``, served by WEBrick from
``ruby-webrick``) for the ticketer tests, with its own instance and a fresh SQLite
database in a temp dir.

Nothing under /etc or /var/lib is read or written. Debian's Redmine finds its instance
(database.yml, secret key, log, tmp, attachments) under ``Rails.root/instances/<name>``
(``lib/redmine/multi_tenancy.rb``), and ``Rails.root`` is wherever ``config/application.rb``
really lives (Rails resolves it with ``File.realpath``). So the fixture builds a small
Rails root in the temp dir: symlinks to the package's ``app``, ``lib``, ``db``, ``public``
and config files, real copies of the four ``config/*.rb`` files (a symlink would be
resolved back to /usr/share/redmine), its own ``bin/rails``, a ``Gemfile`` that
``eval_gemfile``s the package's and adds ``webrick``, and ``instances/default`` holding
the test database and logs. Ruby loads a few SCM adapter files twice under the two paths
and warns about constants; ``RUBYOPT=-W0`` keeps that out of the log.

Set-up (measured on a 2-core Debian 12 VM): one ``bin/rails runner`` that migrates the new
database, loads Redmine's default data (trackers, statuses, priorities, roles,
workflows) and creates what the tests use: ~5 s. WEBrick ready ~3 s; a restart on the same
database ~3 s. Installing the Debian packages takes ~17 s (COMPONENTS.md).
"""

from __future__ import annotations

import os
import re
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from .base import LOOPBACK, ManagedProcess, free_port, require_binary, run, wait_for_http

REDMINE_ROOT = Path("/usr/share/redmine")
RUBY = "/usr/bin/ruby"

ADMIN_PASSWORD = "watcher-redmine-admin-pw"
ENGINEER = "engineer"
ENGINEER_NAME = "Asha Rao"  # what Redmine shows as the assignee
BOT = "watcher-bot"  # a non-admin API user, bound by the Developer role's workflow
CF_NAME = "Watcher Fingerprint"
PROJECT = "ops"

# Runs inside ``bin/rails runner`` (argv: admin password, project identifier, custom field
# name); prints KEY=VALUE lines that Redmine.__init__ parses.
_SETUP_RB = r"""
admin_pw, project_id, cf_name = ARGV

ActiveRecord::Migration.verbose = false
# Not DatabaseTasks.migrate: outside rake its migration path is relative to the cwd.
ActiveRecord::MigrationContext.new(Rails.root.join('db', 'migrate').to_s, ActiveRecord::SchemaMigration).migrate
ActiveRecord::Base.descendants.each(&:reset_column_information)
Redmine::DefaultData::Loader.load('en') if Redmine::DefaultData::Loader.no_data?

Setting.rest_api_enabled = '1'
Setting.login_required = '1'  # no anonymous reads: every call must carry its key

admin = User.find_by!(login: 'admin')
admin.password = admin.password_confirmation = admin_pw
admin.must_change_passwd = false
admin.save!

project = Project.find_by(identifier: project_id) || Project.create!(
  name: 'Ops', identifier: project_id, is_public: false,
  tracker_ids: Tracker.pluck(:id),
  enabled_module_names: %w[issue_tracking]
)

# "Used as a filter" is what makes GET /issues.json?cf_N=value filter at all.
cf = IssueCustomField.find_by(name: cf_name) || IssueCustomField.create!(
  name: cf_name, field_format: 'string', is_filter: true, searchable: true,
  is_for_all: true, visible: true, tracker_ids: Tracker.pluck(:id)
)

# The same, without "Used as a filter": for the test of that misconfiguration.
plain = IssueCustomField.find_by(name: 'Plain Field') || IssueCustomField.create!(
  name: 'Plain Field', field_format: 'string', is_filter: false,
  is_for_all: true, visible: true, tracker_ids: Tracker.pluck(:id)
)

def user(login, first, last, password)
  User.find_by(login: login) || User.create!(
    login: login, firstname: first, lastname: last, mail: "#{login}@watcher.test",
    password: password, password_confirmation: password, must_change_passwd: false
  )
end

developer = Role.find_by!(name: 'Developer')
engineer = user('engineer', 'Asha', 'Rao', SecureRandom.hex(12))
bot = user('watcher-bot', 'Watcher', 'Bot', SecureRandom.hex(12))
[engineer, bot].each do |u|
  Member.create!(project: project, principal: u, role_ids: [developer.id]) unless Member.exists?(project_id: project.id, user_id: u.id)
end

puts "ADMIN_KEY=#{admin.api_key}"
puts "ENGINEER_KEY=#{engineer.api_key}"
puts "BOT_KEY=#{bot.api_key}"
puts "CF_ID=#{cf.id}"
puts "PLAIN_CF_ID=#{plain.id}"
puts "PROJECT_ID=#{project.id}"
IssueStatus.all.each { |s| puts "STATUS_#{s.name.upcase.tr(' ', '_')}=#{s.id}" }
IssuePriority.all.each { |p| puts "PRIORITY_#{p.name.upcase}=#{p.id}" }
"""

# The package's config files that must be real files in the test root (see above).
_COPIED_CONFIG = ("application.rb", "boot.rb", "environment.rb", "multitenancy_environment.rb")


class Redmine:
    """Redmine on ``url`` with the REST API on; ``admin_key``, ``engineer_key``, ``bot_key``."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        require_binary(RUBY)
        require_binary(str(REDMINE_ROOT / "bin" / "rails"))
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.project = PROJECT
        self.cf_name = CF_NAME
        self.engineer = ENGINEER
        self.engineer_name = ENGINEER_NAME
        self.root = self.workdir / "root"
        self.instance = self.root / "instances" / "default"
        self.log_path = self.workdir / "webrick.log"
        self.pidfile = self.instance / "tmp" / "server.pid"
        self.admin_key = self.engineer_key = self.bot_key = ""
        self.cf_id = self.plain_cf_id = self.project_id = 0
        self.statuses: dict[str, int] = {}  # "NEW" -> 1, "IN_PROGRESS" -> 2, ...
        self.priorities: dict[str, int] = {}  # "URGENT" -> 4, ...
        self.setup_seconds = 0.0
        self._process: ManagedProcess | None = None
        self._initialised = False
        self._build_root()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RAILS_ENV": "production",
            "REDMINE_INSTANCE": "default",
            "BUNDLE_GEMFILE": str(self.root / "Gemfile"),
            "RUBYOPT": "-W0",
        }

    def _build_root(self) -> None:
        (self.root / "config").mkdir(parents=True, exist_ok=True)
        (self.root / "bin").mkdir(exist_ok=True)
        for entry in REDMINE_ROOT.iterdir():
            if entry.name not in ("config", "bin", "instances", "Gemfile", "Gemfile.lock"):
                _symlink(entry, self.root / entry.name)
        for entry in (REDMINE_ROOT / "config").iterdir():
            target = self.root / "config" / entry.name
            if entry.name in _COPIED_CONFIG:
                target.write_bytes(entry.read_bytes())
            elif entry.name != "database.yml":  # the package's points at /var/lib
                _symlink(entry, target)
        rails = self.root / "bin" / "rails"
        rails.write_bytes((REDMINE_ROOT / "bin" / "rails").read_bytes())
        rails.chmod(0o755)
        (self.root / "Gemfile").write_text(
            f'eval_gemfile "{REDMINE_ROOT / "Gemfile"}"\n'
            "# Ruby 3 ships no web server; Debian packages this one as ruby-webrick.\n"
            'gem "webrick"\n'
        )
        for sub in ("config", "log", "tmp", "files"):
            (self.instance / sub).mkdir(parents=True, exist_ok=True)
        (self.instance / "config" / "database.yml").write_text(
            "production:\n"
            "  adapter: sqlite3\n"
            f"  database: {self.instance / 'redmine.sqlite3'}\n"
            "  encoding: utf8\n"
            "  timeout: 5000\n"
        )
        (self.instance / "config" / "secret_key.txt").write_text(secrets.token_hex(32) + "\n")

    def _initialise(self) -> None:
        script = self.workdir / "setup.rb"
        script.write_text(_SETUP_RB)
        out = run(
            [
                RUBY,
                str(self.root / "bin" / "rails"),
                "runner",
                str(script),
                ADMIN_PASSWORD,
                self.project,
                self.cf_name,
            ],
            env=self.env,
            timeout=300,
        ).stdout
        values = dict(re.findall(r"^(\w+)=(.*)$", out, re.M))
        self.admin_key = values["ADMIN_KEY"]
        self.engineer_key = values["ENGINEER_KEY"]
        self.bot_key = values["BOT_KEY"]
        self.cf_id = int(values["CF_ID"])
        self.plain_cf_id = int(values["PLAIN_CF_ID"])
        self.project_id = int(values["PROJECT_ID"])
        self.statuses = {k[7:]: int(v) for k, v in values.items() if k.startswith("STATUS_")}
        self.priorities = {k[9:]: int(v) for k, v in values.items() if k.startswith("PRIORITY_")}
        self._initialised = True

    # -- control
    def start(self, timeout: float = 120.0) -> Redmine:
        """Start on the same port and database (creating the database the first time)."""
        if self._process is not None and self._process.running():
            return self
        if not self._initialised:
            self._initialise()
        self._process = ManagedProcess(
            [
                RUBY,
                str(self.root / "bin" / "rails"),
                "server",
                "-u",
                "webrick",
                "-b",
                self.host,
                "-p",
                str(self.port),
                "-e",
                "production",
                "-P",
                str(
                    self.pidfile
                ),  # rails refuses to start over a stale one: ManagedProcess removes it
            ],
            self.log_path,
            name=f"redmine:{self.port}",
            pidfile=self.pidfile,
            env=self.env,
            cwd=self.root,
        )
        self._process.start()
        wait_for_http(f"{self.url}/issues.json", timeout, process=self._process)
        return self

    def stop(self) -> None:
        """Stop WEBrick (the database stays)."""
        if self._process is not None:
            self._process.stop()

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    # -- REST helpers for tests (they inspect state; watcher has its own client)
    def _request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> Any:
        with requests.Session() as s:
            s.trust_env = False  # no proxies or ~/.netrc for loopback calls
            s.headers["X-Redmine-API-Key"] = key or self.admin_key
            resp = s.request(method, self.url + path, timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content.strip() else None

    def issues(self, fingerprint: str) -> list[dict[str, Any]]:
        """Every issue in the project (open or closed) carrying ``fingerprint``, oldest first."""
        params = urllib.parse.urlencode(
            {
                "project_id": self.project,
                "status_id": "*",
                f"cf_{self.cf_id}": fingerprint,
                "sort": "id",
                "limit": 100,
            }
        )
        return list(self._request("GET", f"/issues.json?{params}")["issues"])

    def issue(self, issue_id: int | str) -> dict[str, Any]:
        """The issue with its journals (notes and field changes)."""
        return dict(self._request("GET", f"/issues/{issue_id}.json?include=journals")["issue"])

    def fingerprint_of(self, issue: dict[str, Any]) -> str | None:
        for field in issue.get("custom_fields") or []:
            if field.get("id") == self.cf_id:
                return field.get("value")
        return None

    def notes(self, issue_id: int | str) -> list[str]:
        """The issue's notes (comments), oldest first."""
        return [j["notes"] for j in self.issue(issue_id).get("journals", []) if j.get("notes")]

    def changes(self, issue_id: int | str, name: str) -> list[tuple[str, str]]:
        """(old, new) of each journalled change of the attribute ``name`` (e.g. status_id)."""
        return [
            (d.get("old_value"), d.get("new_value"))
            for j in self.issue(issue_id).get("journals", [])
            for d in j.get("details", [])
            if d.get("property") == "attr" and d.get("name") == name
        ]

    def create_issue(self, subject: str, *, fingerprint: str, key: str | None = None) -> int:
        payload = {
            "issue": {
                "project_id": self.project,
                "subject": subject,
                "custom_fields": [{"id": self.cf_id, "value": fingerprint}],
            }
        }
        return int(self._request("POST", "/issues.json", key=key, json=payload)["issue"]["id"])

    def take(self, issue_id: int | str) -> None:
        """The engineer assigns the issue to themself, as on the issue page."""
        payload = {"issue": {"assigned_to_id": "me"}}
        self._request("PUT", f"/issues/{issue_id}.json", key=self.engineer_key, json=payload)

    def set_status(self, issue_id: int | str, status: str) -> None:
        """The engineer moves the issue, e.g. to ``In Progress`` or ``Resolved``."""
        status_id = self.statuses[status.upper().replace(" ", "_")]
        payload = {"issue": {"status_id": status_id}}
        self._request("PUT", f"/issues/{issue_id}.json", key=self.engineer_key, json=payload)

    def __repr__(self) -> str:
        return f"<Redmine {self.url} running={self.running()}>"


def _symlink(source: Path, link: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(source)
