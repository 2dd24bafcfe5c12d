"""`watcher validate` against mutated configs: never a traceback, a hang or a memory blow-up.

A real, valid watcher.yml is mutated (byte flips, control characters, invalid UTF-8, deep
nesting, alias bombs, huge and non-finite numbers, dates that do not exist, tags,
truncation) and each mutant goes through the entry point ``watcher validate`` uses, in
this process: the exit code is 0 or 2, nothing escapes as a traceback, every reported
problem starts with file:line:column, the value of a ``${VAR}`` secret is never printed,
and each run stays under 10 s and 200 MB (tracemalloc peak). The worst shapes also run as
real ``watcher validate`` processes under resource limits, measured by wait4.

The figures (examples, exit codes, worst time and memory) are printed (visible with -s) and
written to fuzz-summary.txt under the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.cli import main as cli
from watcher.cli.main import main

EXAMPLES = int(os.environ.get("WATCHER_FUZZ_EXAMPLES", "1000"))
MAX_SECONDS = 10.0
MAX_BYTES = 200 * 2**20

SECRET = "fuzz-secret-Pa55word"
ENV = {"FUZZ_PASSWORD": SECRET, "FUZZ_TOKEN": "fuzz-token-0123456789"}

# A config that validates as it is, touching most of what the loader and models handle:
# durations, dates, times of day, secrets from the environment, probes, check-ins, audits.
SEED = """\
site: fuzz-site
state: fuzz.db
listen: 127.0.0.1:9177
api_token: "${FUZZ_TOKEN}"
log_level: info
workers: 8
defaults: {interval: 30s, timeout: 10s, resolve_after: 2, reopen_within: 1h}
business_hours:
  timezone: Asia/Kolkata
  days: [mon, tue, wed, thu, fri]
  start: "08:00"
  end: "18:00"
  holidays: [2026-01-26, 2026-08-15]
history: {raw: 2d, hourly: 90d, daily: 730d}
smtp: {host: 127.0.0.1, port: 25, from: watcher@example.org}
contacts:
  hotline: [{name: L2 on call, email: emergency@example.org, phone: "+91-0000"}]
  managers: [{name: IT manager, email: it-manager@example.org}]
targets:
  - name: this-host
    description: The machine watcher runs on.
    labels: {role: watcher, rack: 7}
    interval: 1m
    probes:
      - disk: {paths: [/]}
      - command: {name: uptime, run: [cat, /proc/uptime], metrics: {uptime_s: '^([0-9.]+)'}}
      - tcp: {name: watcher-port, host: 127.0.0.1, port: 9177}
      - http: &web {name: health, url: "http://127.0.0.1:9177/healthz", max_latency: 2s}
      - http:
          name: shop
          url: "http://127.0.0.1:9177/"
          basic_auth: {user: monitor, password: "${FUZZ_PASSWORD}"}
          headers: {X-Api-Key: "${FUZZ_TOKEN}"}
          cert_min_days: 14
          timeout: 5s
  - name: other-host
    host: 127.0.0.2
    transport: local
    probes:
      - http: {<<: *web, name: web}
checkins:
  - {name: nightly-backup, period: 1d, grace: 2h, token: "${FUZZ_PASSWORD}"}
audits:
  - {every: "mon 08:00", since: 7d, to: [managers]}
rules: [site-rules.yml]
"""
# A site's own small pack beside it (the shipped one, unmutated, would only add parse time
# to every example): priorities with SLA durations, and rules the targets are checked against.
SITE_RULES = """\
priorities:
  P1: {name: Urgent, response: 2h, resolve: 4h, clock: 24x7, ticket: true, page: true}
  P2: {name: High, response: 4h, resolve: 2 working days, clock: business, ticket: true}
  P3: {name: Medium, response: 1 working day, resolve: 7 working days, clock: business}
rules:
  - {name: web-down, probe: http, when: failed, for: 2m, priority: P1,
     summary: "{target}: {message}"}
  - {name: disk-high, probe: disk, when: "used_percent >= 90", priority: P2, group: "disk {path}"}
  - {name: slow, probe: health, when: "latency_s > 1500ms", priority: P3}
"""

# Values a hostile or careless hand puts where a scalar was.
HOSTILE_VALUES = [
    ".inf",
    "-.inf",
    ".nan",
    '"inf"',
    '"-nan"',
    "1.0e+999",
    "1e999",
    "99999999999999999999999999999999",
    "9" * 5000,
    "-1",
    "0s",
    "0",
    "0.0001s",
    "99999999999999999999d",
    "1e308",
    "2026-02-30",
    "2026-13-01",
    "2026-02-29 25:61:61",
    "!!int abc",
    "!!float x",
    "!!bool maybe",
    "!!binary '#not base64'",
    "!!timestamp nope",
    "!!python/object/apply:os.system [true]",
    "!custom value",
    "!!map x",
    "*nowhere",
    "&loop [*loop]",
    "${FUZZ_PASSWORD}",
    "${FUZZ_UNSET_VARIABLE}",
    "[${FUZZ_PASSWORD}]",
    "{a: ${FUZZ_TOKEN}}",
    "~",
    "[]",
    "{}",
    "'unterminated",
    '"\\x00 \\uffff"',
    "<<: *web",
    "? [a, b]\n  : c",
]
CONTROL_CHARS = [chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127]] + [
    "\x80",
    "\x9f",
    "\ufffe",
    "\uffff",
]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xe2\x82"]
SCALAR = re.compile(rb"(?m)(?<=: )[^\s{}\[\],#][^\n,}\]]*")


def alias_bomb(levels: int, width: int) -> str:
    lines = [f"x0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@st.composite
def mutation(draw: st.DrawFn, size: int) -> tuple[str, object]:
    kind = draw(
        st.sampled_from(
            [
                "flip",
                "control",
                "utf8",
                "value",
                "value",
                "value",
                "truncate",
                "nest",
                "bomb",
                "delete_line",
                "duplicate_line",
                "indent",
            ]
        )
    )
    at = draw(st.integers(0, size))
    if kind == "flip":
        return kind, (at, draw(st.integers(1, 255)))
    if kind == "control":
        return kind, (at, draw(st.sampled_from(CONTROL_CHARS)))
    if kind == "utf8":
        return kind, (at, draw(st.sampled_from(BAD_UTF8)))
    if kind == "value":
        return kind, (draw(st.integers(0, 200)), draw(st.sampled_from(HOSTILE_VALUES)))
    if kind == "nest":
        depth = draw(st.sampled_from([10, 63, 64, 65, 100, 500, 1000, 5000]))
        flow = draw(st.booleans())
        return kind, (draw(st.integers(0, 200)), depth, flow)
    if kind == "bomb":
        return kind, (draw(st.integers(2, 12)), draw(st.integers(2, 12)), draw(st.integers(0, 200)))
    return kind, at


def apply(text: bytes, kind: str, arg: object) -> bytes:
    """One mutation of the config's bytes."""
    if not text:
        return text
    if kind == "flip":
        at, mask = arg  # type: ignore[misc]
        at %= len(text)
        return text[:at] + bytes([text[at] ^ mask]) + text[at + 1 :]
    if kind in ("control", "utf8"):
        at, piece = arg  # type: ignore[misc]
        raw = piece.encode() if isinstance(piece, str) else piece
        return text[:at] + raw + text[at:]
    if kind == "truncate":
        return text[: int(arg)]  # type: ignore[call-overload]
    lines = text.split(b"\n")
    if kind in ("delete_line", "duplicate_line", "indent"):
        index = int(arg) % len(lines)  # type: ignore[call-overload]
        if kind == "delete_line":
            del lines[index]
        elif kind == "duplicate_line":
            lines.insert(index, lines[index])
        else:
            lines[index] = b"  " + lines[index]
        return b"\n".join(lines)
    scalars = list(SCALAR.finditer(text))
    if not scalars:
        return text
    if kind == "value":
        index, value = arg  # type: ignore[misc]
        match = scalars[index % len(scalars)]
        return text[: match.start()] + value.encode() + text[match.end() :]
    if kind == "nest":
        index, depth, flow = arg  # type: ignore[misc]
        deep = "[" * depth + "1" + "]" * depth if flow else "{a: " * depth + "1" + "}" * depth
        match = scalars[index % len(scalars)]
        return text[: match.start()] + deep.encode() + text[match.end() :]
    if kind == "bomb":
        levels, width, index = arg  # type: ignore[misc]
        match = scalars[index % len(scalars)]
        head = alias_bomb(levels, width).encode()
        return head + text[: match.start()] + f"*l{levels - 1}".encode() + text[match.end() :]
    raise AssertionError(kind)


@dataclass
class Figures:
    examples: int = 0
    exit_codes: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    worst_seconds: float = 0.0
    worst_seconds_kind: str = ""
    worst_bytes: int = 0
    worst_bytes_kind: str = ""
    total_seconds: float = 0.0


def validate_in_process(path: Path) -> tuple[int, str, float, int]:
    """``watcher validate -c path`` through the CLI's own entry point: exit code, output,
    seconds and tracemalloc peak. An exception escaping it is the traceback a user sees."""
    out = io.StringIO()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(["validate", "-c", str(path)])
        except BaseException:  # noqa: BLE001 - SystemExit and RecursionError included
            code = -1
            out.write("Traceback (most recent call last):\n" + traceback.format_exc())
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before
    return code, out.getvalue(), seconds, peak


def problems_without_location(output: str, path: Path) -> list[str]:
    """Reported problems that do not start with file:line:column of one of the site's files
    (watcher.yml or a rule pack beside it)."""
    located = re.compile(re.escape(str(path.parent)) + r"/[^/:]+\.ya?ml:\d+:\d+: ")
    bad = []
    for line in output.splitlines():
        if not line or line.startswith("    hint: ") or re.match(r"\d+ problems? in the", line):
            continue
        if not located.match(line):
            bad.append(line)
    return bad


@contextlib.contextmanager
def environment(values: dict[str, str]):  # type: ignore[no-untyped-def]
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_no_mutated_config_makes_validate_crash_hang_or_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() builds the same argparse parser on every call; under tracemalloc that took
    # two thirds of each example. Built once, everything after it runs as in the command.
    parser = cli._parser()
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    seed = SEED.encode()
    path = tmp_path / "watcher.yml"
    path.write_bytes(seed)
    (tmp_path / "site-rules.yml").write_text(SITE_RULES)
    figures = Figures()
    with environment(ENV):
        assert main(["validate", "-c", str(path)]) == 0, "the seed config must be valid"
        tracemalloc.start()
        try:

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                print_blob=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.lists(mutation(len(seed)), min_size=1, max_size=3))
            def one_example(mutations: list[tuple[str, object]]) -> None:
                text = seed
                for kind, arg in mutations:
                    text = apply(text, kind, arg)
                path.write_bytes(text)
                code, output, seconds, peak = validate_in_process(path)
                name = "+".join(kind for kind, _ in mutations)
                figures.examples += 1
                figures.exit_codes[code] += 1
                figures.kinds.update(kind for kind, _ in mutations)
                figures.total_seconds += seconds
                if seconds > figures.worst_seconds:
                    figures.worst_seconds, figures.worst_seconds_kind = seconds, name
                if peak > figures.worst_bytes:
                    figures.worst_bytes, figures.worst_bytes_kind = peak, name
                assert "Traceback" not in output, output
                assert code in (0, 2), f"exit {code}:\n{output}"
                assert seconds < MAX_SECONDS, f"{seconds:.1f} s for {name}"
                assert peak < MAX_BYTES, f"{peak / 2**20:.0f} MB for {name}"
                assert SECRET not in output, output
                if code == 2:
                    unlocated = problems_without_location(output, path)
                    assert not unlocated, f"{name}: problems without file:line:\n{output}"

            one_example()
        finally:
            tracemalloc.stop()
            summary = (
                f"config fuzz: {figures.examples} examples in {figures.total_seconds:.1f} s of "
                f"validate; exit codes {dict(sorted(figures.exit_codes.items()))}; "
                f"worst time {figures.worst_seconds * 1000:.0f} ms ({figures.worst_seconds_kind}); "
                f"worst tracemalloc peak {figures.worst_bytes / 2**20:.1f} MB "
                f"({figures.worst_bytes_kind}); mutations {dict(sorted(figures.kinds.items()))}"
            )
            (tmp_path / "fuzz-summary.txt").write_text(summary + "\n")
            print("\n" + summary)
    assert figures.examples >= min(EXAMPLES, 1000)
    assert figures.exit_codes[2] > figures.examples // 2, "most mutants should be refused"


# ------------------------------------------------------------ real processes, worst shapes


def _deep(depth: int) -> bytes:
    return b"site: deep\nlabels: " + b"[" * depth + b"]" * depth + b"\n"


WORST_SHAPES = {
    "alias-bomb": ("site: bomb\n" + alias_bomb(12, 12) + "targets: *l11\n").encode(),
    "alias-bomb-in-error": (alias_bomb(12, 12) + "site: *l11\n").encode(),
    "nesting-100k-flow": _deep(100_000),
    "nesting-2k-block": b"site: deep\n" + b"".join(b" " * i + b"a:\n" for i in range(2_000)),
    "file-of-40MB": b"site: big\n" + b"# padding padding padding padding padding\n" * 1_000_000,
    "date-2026-02-30": b"site: d\nbusiness_hours: {holidays: [2026-02-30]}\n",
    "nul-bytes": b"site: n\n# a comment \x00 with NUL\ntargets: []\x00\n",
    "invalid-utf8": b"site: u\ntargets:\n  - name: caf\xe9\n",
    "duplicate-key-on-20k-lines": b"site: many\n" + b"x: 1\n" * 20_000,
    "unknown-key-on-20k-targets": b"site: many\ntargets:\n"
    + b"".join(b"  - {name: t%d, bogus: 1}\n" % i for i in range(20_000)),
    "huge-duration": b"site: h\ndefaults: {interval: 99999999999999999999999d}\n",
}


# Runs the command under limits (1 GB of address space, 30 s of CPU: a failure must not take
# the machine with it) and writes its exit code and peak RSS. A small process of its own:
# a child forked from pytest would count pytest's pages in its peak RSS.
MEASURE = """
import resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))
code = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
open(sys.argv[1], "w").write(f"{code} {peak}")
"""


def run_validate(path: Path) -> tuple[int, str, float, int]:
    """A real ``watcher validate``: exit code, output, wall seconds, peak RSS in bytes."""
    figures = path.with_suffix(".figures")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(figures)]
        + [sys.executable, "-m", "watcher.cli", "validate", "-c", str(path)],
        capture_output=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    code, peak = (int(x) for x in figures.read_text().split())
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    return code, output, seconds, peak


@pytest.mark.parametrize("shape", sorted(WORST_SHAPES))
def test_the_worst_shapes_are_refused_by_a_real_validate_within_bounds(
    tmp_path: Path, shape: str
) -> None:
    path = tmp_path / "watcher.yml"
    path.write_bytes(WORST_SHAPES[shape])
    code, output, seconds, rss = run_validate(path)
    line = f"{shape}: exit {code}, {seconds:.2f} s, peak RSS {rss / 2**20:.0f} MB"
    with (tmp_path.parent / "fuzz-processes.txt").open("a") as log:
        log.write(line + "\n")
    print("\n" + line)
    assert code == 2, output
    assert "Traceback" not in output, output
    assert seconds < MAX_SECONDS, line
    assert rss < MAX_BYTES, line
    assert not problems_without_location(output, path), output
