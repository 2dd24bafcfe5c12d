"""The HTML report: self-contained, escaped, with its charts; opened in headless Chromium
for console errors, outside requests, the charts, a screenshot and the printed PDF."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape

from probes.base import run_probe
from probes.du import DuConfig, DuProbe
from tests.servers.base import make_workdir, require_binary
from tests.support.audit_history import NOW, SITE_CONFIG, populate_site, write
from tests.support.chromium import open_page
from tests.support.helpers import config_from
from tests.support.hostile import DOM_QUESTIONS, Poisoner
from tests.support.ssh_helpers import context
from watcher.audit.build import build_audit
from watcher.audit.figures import Audit
from watcher.audit.report_html import CSP, render_html
from watcher.audit.report_md import render_markdown
from watcher.store import Store
from watcher.transports.local import LocalRunner

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
# 2 disk charts (one per server with disks), 3 usage charts per server with load and
# memory (load, memory, swap), 2 for the mail queue, 1 for the fleet, 1 SLA chart
CHARTS = 2 + 3 + 3 + 2 + 1 + 1


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    directory = tmp_path_factory.mktemp("site")
    config = config_from(directory, SITE_CONFIG, environ={})
    store = Store(config.state_path)
    populate_site(store, config)
    audit = build_audit(store, config, since=timedelta(days=30), now=NOW)
    store.close()
    return audit


@pytest.fixture(scope="module")
def html(site: Audit) -> str:
    return render_html(site)


def test_the_page_forbids_every_outside_load_and_names_no_address(html: str) -> None:
    head = html[: html.index("</head>")]
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in head
    assert head.index("Content-Security-Policy") < head.index("<style>")
    for pattern in (
        r"\bsrc\s*=",
        r"\bhref\s*=",
        r"url\(",
        r"@import",
        r"https?:",
        r"<script",
        r"<link",
        r"<iframe",
        r"<img",
    ):
        assert re.search(pattern, html, re.IGNORECASE) is None, pattern


def test_text_from_probes_and_incidents_is_shown_not_interpreted(html: str) -> None:
    assert "HTTP 502 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;Front desk&lt;/b&gt;" in html
    assert '<td class="file">/var/log/&lt;script&gt;x.log</td>' in html


def test_old_files_have_their_section_and_recommendation(html: str, site: Audit) -> None:
    section = html[html.index("<h3>Old files</h3>") :]
    section = section[: section.index("</section>")]
    assert (
        '<tr><td>/var/log</td><td class="n">30d</td><td class="n">240</td>'
        '<td class="n">3.33 GB</td><td class="n">3.3% of /var</td></tr>'
    ) in section
    assert (
        '<td class="n">2.15 GB</td><td class="n">45</td><td class="file">/var/log/mail.log.1</td>'
        in section
    )
    assert (
        "/var/log on mail1: 240 files untouched for over 30 days take 3.33 GB; compress or remove them"
        in html
    )


def test_the_charts_are_inline_svg_with_thresholds_and_forecasts(html: str) -> None:
    assert html.count("<svg ") == CHARTS
    disk_chart = html[html.index('<figure class="disk-chart">', html.index('id="server-mail1"')) :]
    disk_chart = disk_chart[: disk_chart.index("</figure>")]
    assert disk_chart.count('class="threshold"') == 2 and "critical 95%" in disk_chart
    assert disk_chart.count('class="forecast"') == 1 and "/var 02 Dec" in disk_chart
    bars = re.findall(r'<rect [^>]*width="([\d.]+)"[^>]*class="bar"', html)
    assert len(bars) == 4 and float(bars[1]) == 0.0  # P1 resolution: none met


def test_the_page_starts_with_ranked_recommendations(html: str, site: Audit) -> None:
    section = html[
        html.index('id="recommendations"') : html.index(
            "</section>", html.index('id="recommendations"')
        )
    ]
    assert section.index("/var on mail1 full in about 9 days at the current rate") < section.index(
        "was overloaded"
    )
    assert section.count("<li>") == len(site.recommendations)


def test_the_markdown_carries_the_same_recommendations_and_tables(site: Audit) -> None:
    text = render_markdown(site)
    assert text.startswith("# Server and usage audit: acme-pune\n")
    assert "2. **HIGH** /var on mail1 full in about 9 days at the current rate" in text
    # used is the latest sample (91.56%, noise included), not its hour's mean (91.43%)
    assert re.search(
        r"^\| mail1 \| /var \| 92% \| 9\.01 GB \| \+7\.00 pts \| 02 Dec 2026 \(in 9 d\) \|",
        text,
        re.MULTILINE,
    )
    assert "| P1 Urgent | 2 | 2 | 0 | 100% (2/2) | 0% (0/2) | 40m | 5h |" in text
    assert "| mail1 | /var/log | 30d | 240 | 3.33 GB | 3.3% of /var |" in text
    assert "| mail1 | /var/log | 52.4 MB | 33 | /var/log/\\<script\\>x.log |" in text


def test_an_old_file_name_from_the_target_is_text_in_every_format(tmp_path: Path) -> None:
    """The real probe lists a file whose name has spaces, a newline, markup, a pipe and
    backticks; the HTML escapes it, the Markdown keeps it inert, the JSON keeps it whole."""
    logs = make_workdir("old-names")
    name = "old report\n<script>alert('x')<script> | `rm`.log"
    (logs / name).write_bytes(b"x" * 4096)
    moment = time.time() - 45.5 * 86400
    os.utime(logs / name, (moment, moment))
    config = config_from(tmp_path, SITE_CONFIG, environ={})
    store = Store(config.state_path)
    probe = DuProbe(
        DuConfig(paths=[str(logs)], old_files={"paths": [str(logs)], "older_than": "30d"})  # type: ignore[arg-type]
    )
    write(store, run_probe(probe, context(LocalRunner(), target="mail1"), "du"))
    audit = build_audit(store, config, since=timedelta(days=1), now=datetime.now(UTC))
    store.close()
    [old] = next(s for s in audit.servers if s.target == "mail1").old_files
    shown = f"{logs}/old report?<script>alert('x')<script> | `rm`.log"
    assert (old.files, old.size_bytes, [(f.name, f.age_days) for f in old.largest]) == (
        1,
        4096,
        [(shown, 45)],
    )

    page = render_html(audit)
    assert f'<td class="file">{escape(shown)}</td>' in page
    assert "<script" not in page and "alert(&#39;x&#39;)" in page

    text = render_markdown(audit)
    [row] = [line for line in text.splitlines() if "old report" in line]
    assert row.endswith("old report?\\<script\\>alert\\('x'\\)\\<script\\> \\| \\`rm\\`.log |")
    assert len(re.split(r"(?<!\\)\|", row)) == 7  # 5 cells: the pipe in the name is not a 6th

    data = json.loads(audit.to_json())
    [mail1] = [s for s in data["servers"] if s["target"] == "mail1"]
    assert mail1["old_files"][0]["largest"][0]["name"] == shown


# Every text field of the audit that the report prints: names from the config, messages
# and evidence from probes, file names from targets, summaries from incidents.
SHOWN = {
    "Audit.site",
    "Audit.notes",
    "ServerAudit.target",
    "ServerAudit.host",
    "ServerAudit.description",
    "DiskFigures.path",
    "Forecast.note",
    "UsageFigures.label",
    "UsageFigures.unit",
    "Cleanup.path",
    "Cleanup.why",
    "OldFiles.path",
    "OldFiles.older_than",
    "OldFiles.mount",
    "OldFile.name",
    "FleetFigures.target",
    "FleetFigures.probe",
    "FleetFigures.late",
    "HeartbeatFigures.name",
    "HeartbeatFigures.target",
    "HeartbeatFigures.last_status",
    "HeartbeatFigures.last_message",
    "PriorityFigures.priority",
    "PriorityFigures.name",
    "PriorityFigures.clock",
    "PriorityFigures.response_target",
    "PriorityFigures.resolution_target",
    "RuleNoise.rule",
    "RuleNoise.priorities",
    "IncidentFigures.missed[priority]",
    "IncidentFigures.missed[target]",
    "IncidentFigures.missed[summary]",
    "IncidentFigures.missed[missed]",
    "Recommendation.severity",
    "Recommendation.text",
    "Recommendation.detail",
}


@pytest.fixture(scope="module")
def hostile(site: Audit) -> tuple[str, Poisoner]:
    """The report of the same site with a different hostile value in every text field
    (the timezone stays a real one: the report computes with it)."""
    poison = Poisoner(keep=frozenset({"timezone"}))
    audit = poison.poison(dataclasses.replace(site, notes=["a note"]))
    return render_html(audit), poison


def test_every_field_of_the_audit_is_shown_escaped_and_whole(
    hostile: tuple[str, Poisoner],
) -> None:
    page, poison = hostile
    assert "<script" not in page and "<img" not in page
    assert poison.shown(page) >= SHOWN  # and each of them only in its escaped form
    assert page.count("<svg ") == CHARTS


# ------------------------------------------------------------------------ in a browser

QUESTIONS = {
    "title": "document.title",
    "charts": "document.querySelectorAll('svg.chart').length",
    "chart_lines": "document.querySelectorAll('svg.chart path.series').length",
    "loaded_resources": "performance.getEntriesByType('resource').length",
    "width": "document.documentElement.scrollWidth",
    "recommendations": "document.querySelectorAll('ol.recs li').length",
}


@pytest.mark.slow
def test_chromium_draws_the_report_without_errors_or_outside_requests(
    html: str, site: Audit, tmp_path: Path
) -> None:
    chromium = require_binary("chromium")
    page = tmp_path / "audit.html"
    page.write_text(html, encoding="utf-8")
    report = open_page(chromium, page, expressions=QUESTIONS)
    assert report.problems == []
    assert report.requests == [page.resolve().as_uri()]
    assert report.values["loaded_resources"] == 0
    assert report.values["charts"] == CHARTS and report.values["chart_lines"] >= CHARTS - 1
    assert report.values["recommendations"] == len(site.recommendations)
    assert report.values["title"].startswith("Audit acme-pune: 24 Oct 2026 to 23 Nov 2026")
    assert report.values["width"] <= 1100  # nothing wider than the window
    assert report.png.startswith(b"\x89PNG\r\n\x1a\n") and len(report.png) > 50_000
    assert report.pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", report.pdf))
    assert 3 <= pages <= 12  # printable on A4: a handful of pages, sections kept whole
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "audit-report.png").write_bytes(report.png)
    (ARTIFACTS / "audit-report.pdf").write_bytes(report.pdf)
    (ARTIFACTS / "audit-report.html").write_text(html, encoding="utf-8")


@pytest.mark.slow
def test_chromium_finds_no_element_injected_into_the_report(
    hostile: tuple[str, Poisoner], tmp_path: Path
) -> None:
    chromium = require_binary("chromium")
    page = tmp_path / "hostile.html"
    page.write_text(hostile[0], encoding="utf-8")
    report = open_page(chromium, page, expressions={**DOM_QUESTIONS, **QUESTIONS})
    assert report.problems == []
    assert report.requests == [page.resolve().as_uri()]
    assert (report.values["scripts"], report.values["images"], report.values["handlers"]) == (
        0,
        0,
        0,
    )
    assert report.values["as_text"] > len(SHOWN) and report.values["in_attributes"] > 0
    assert report.values["charts"] == CHARTS


@pytest.mark.slow
def test_the_browser_check_would_catch_an_outside_request(
    html: str, tmp_path: Path, http_server
) -> None:
    """The control: the same check sees a request the page should not make, and the
    page's policy is what keeps it from leaving."""
    chromium = require_binary("chromium")
    outside = http_server.url_for("/pixel.png")
    injected = html.replace("</body>", f'<img src="{outside}" alt=""></body>')
    guarded = tmp_path / "guarded.html"
    guarded.write_text(injected, encoding="utf-8")
    report = open_page(chromium, guarded)
    assert outside in report.requests
    assert any("Content Security Policy" in p for p in report.problems)
    assert http_server.requests_for("/pixel.png") == []
    unguarded = tmp_path / "unguarded.html"
    unguarded.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", injected), encoding="utf-8"
    )
    report = open_page(chromium, unguarded)
    assert outside in report.requests
    assert len(http_server.requests_for("/pixel.png")) == 1
