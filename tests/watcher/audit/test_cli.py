"""``watcher audit``: formats, files, a schedule's settings, mailing now, and the errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.audit_history import NOW, compact, series
from watcher.cli.main import main
from watcher.store import Store

AT = NOW.isoformat()  # Monday 23 Nov 2026 08:00 IST


def _site(directory: Path, smtp_port: int = 2525) -> Path:
    path = directory / "watcher.yml"
    path.write_text(
        textwrap.dedent(f"""
        site: acme-pune
        state: state/watcher.db
        listen: null
        smtp: {{host: 127.0.0.1, port: {smtp_port}, from: watcher@acme.example}}
        contacts:
          managers: [{{name: IT manager, email: it@acme.example}}]
        audits:
          - {{name: weekly, every: "mon 08:00", format: md, thresholds: {{forecast_days: 5}}}}
        """)
    )
    store = Store(directory / "state" / "watcher.db")
    series(
        store,
        "mail1",
        "disk",
        lambda day, rng: {"used_percent": 61 + day + rng.gauss(0, 0.5)},
        labels={"path": "/var"},
    )
    compact(store)
    store.close()
    return path


def test_html_goes_to_standard_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "-c", str(_site(tmp_path)), "--at", AT]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and "/var on mail1 full in about 9 days" in out


def test_json_into_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "audit.json"
    assert (
        main(
            [
                "audit",
                "-c",
                str(_site(tmp_path)),
                "--at",
                AT,
                "--since",
                "14d",
                "--format",
                "json",
                "--out",
                str(target),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == f"wrote {target}: 1 recommendations (0 critical, 1 high)\n"
    data = json.loads(target.read_text())
    assert (
        data["start"] == "2026-11-09T02:30:00+00:00" and data["end"] == "2026-11-23T02:30:00+00:00"
    )
    assert (
        data["recommendations"][0]["text"]
        == "/var on mail1 full in about 9 days at the current rate"
    )


def test_a_schedule_lends_its_format_period_and_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "-c", str(_site(tmp_path)), "--at", AT, "--schedule", "weekly"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Server and usage audit: acme-pune\n\n16 Nov 2026 to 23 Nov 2026 (7d)")
    # nine days is past this schedule's five-day horizon: only the fill level is mentioned
    assert "1. **MEDIUM** /var on mail1 is 91% full; plan a cleanup" in out


def test_mailing_the_report_now(
    tmp_path: Path, smtp_sink, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _site(tmp_path, smtp_sink.port)
    assert main(["audit", "-c", str(config), "--at", AT, "--to", "cio@acme.example"]) == 0
    assert capsys.readouterr().err == "mailed the audit to cio@acme.example\n"
    [mail] = smtp_sink.wait_for_messages(1)
    assert mail.rcpt_tos == ["cio@acme.example"]
    assert (
        mail.message.get_body(preferencelist=("html",)).get_content().startswith("<!DOCTYPE html>")
    )


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["--since", "3x"], 2, "'3x' is not a duration"),
        (["--since", "0d"], 2, "--since must be longer than zero"),
        (["--schedule", "monthly"], 2, "no audits: entry named 'monthly' (audits: weekly)"),
        (["--at", "yesterday"], 2, "Invalid isoformat string"),
    ],
)
def test_bad_arguments_say_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, error: str
) -> None:
    assert main(["audit", "-c", str(_site(tmp_path)), *args]) == code
    assert error in capsys.readouterr().err


def test_no_state_file_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "watcher.yml"
    config.write_text("site: acme\nstate: nothing-here.db\n")
    assert main(["audit", "-c", str(config)]) == 1
    assert "no history at" in capsys.readouterr().err
