#!/usr/bin/env bash
# Installs the Debian packages the test suite (and, with --bench, the benchmarks) start
# for real: OpenSSH, Postfix, Dovecot, Request Tracker 5, Prometheus, the Nagios plugins,
# Chromium, Redmine. Idempotent and non-interactive; the daemons are never started as
# services, the tests start their own copies on loopback ports.
set -euo pipefail

want_bench=0
[ "${1:-}" = "--bench" ] && want_bench=1

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
  echo "install-debian-deps: needs root (or sudo) to install Debian packages" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }

packages=(
  python3-venv python3-pip
  openssh-server openssh-client
  postfix dovecot-imapd dovecot-pop3d ssl-cert
  request-tracker5 rt5-db-sqlite rt5-standalone
  redmine redmine-sqlite ruby-webrick
  prometheus prometheus-blackbox-exporter
  monitoring-plugins-basic monitoring-plugins-standard
  chromium
  iproute2 procps util-linux sqlite3 ca-certificates
  prometheus-alertmanager
  postgresql
)
if [ "$want_bench" = 1 ]; then
  packages+=(nginx-light monitoring-plugins curl)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-debian-deps: all ${#packages[@]} packages present"
  exit 0
fi

# Without policy-rc.d, package scripts would start sshd, postfix, dovecot and prometheus
# on their standard ports; the tests start their own copies instead.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT

debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string localhost
request-tracker5 request-tracker5/database-type select sqlite3
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/initial-root-password password watcher-test-root
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1
request-tracker5 request-tracker5/webpath string /rt
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/rtname string watcher-test
request-tracker5 request-tracker5/organization string watcher.test
request-tracker5 request-tracker5/correspondaddress string rt@localhost
request-tracker5 request-tracker5/commentaddress string rt-comment@localhost
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/instances/default/dbconfig-install boolean true
SEL

if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt_get update
fi
echo "install-debian-deps: installing ${missing[*]}"
apt_get install -y --no-install-recommends "${missing[@]}"
