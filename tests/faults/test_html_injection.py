"""Names a target chooses reach a manager's mailbox: files and directories named as markup,
scanned by the real ``du`` probe, mailed in the audit through a real SMTP server, opened
in Chromium. The report must carry them as text, never as elements."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from markupsafe import escape

from probes.base import run_probe
from probes.du import DuConfig, DuProbe
from tests.servers.base import make_workdir, require_binary
from tests.support.audit_history import write
from tests.support.chromium import open_page
from tests.support.hostile import DOM_QUESTIONS
from tests.support.ssh_helpers import context
from watcher.cli.main import main
from watcher.store import Store
from watcher.transports.local import LocalRunner

# File names cannot hold "/", so the script tag is left open: unescaped, it would swallow
# the rest of the page.
NAMES = (
    "<script>alert(1).log",
    "<img src=x onerror=alert(2)>.log",
    "\"double\" 'single' & &amp; &lt;.log",
    "Ünïcødé ✓ 日本語 Ελληνικά עברית 🚨" * 3 + ".log",
)


@pytest.mark.slow
def test_file_names_from_a_target_reach_the_mailed_report_as_text(
    tmp_path: Path, smtp_sink, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = require_binary("chromium")
    logs = make_workdir("hostile-names")
    old = time.time() - 40 * 86400
    for size, name in enumerate(NAMES, start=1):
        (logs / name).write_bytes(b"x" * 4096 * size)
        os.utime(logs / name, (old, old))
        folder = logs / name.removesuffix(".log")  # a directory of the same name for du
        folder.mkdir()
        (folder / "new.log").write_bytes(b"x" * 8192 * size)
    config = tmp_path / "watcher.yml"
    config.write_text(
        textwrap.dedent(f"""
        site: acme-pune
        state: state/watcher.db
        listen: null
        smtp: {{host: 127.0.0.1, port: {smtp_sink.port}, from: watcher@acme.example}}
        targets:
          - name: mail1
            probes:
              - du: {{paths: ["{logs}"], old_files: {{paths: ["{logs}"], older_than: 30d}}}}
        """)
    )
    store = Store(tmp_path / "state" / "watcher.db")
    probe = DuProbe(
        DuConfig(paths=[str(logs)], old_files={"paths": [str(logs)], "older_than": "30d"})  # type: ignore[arg-type]
    )
    write(store, run_probe(probe, context(LocalRunner(), target="mail1"), "du"))
    store.close()

    assert main(["audit", "-c", str(config), "--since", "1d", "--to", "cio@acme.example"]) == 0
    assert capsys.readouterr().err == "mailed the audit to cio@acme.example\n"
    [mail] = smtp_sink.wait_for_messages(1)
    html = mail.message.get_body(preferencelist=("html",)).get_content()

    assert "<script" not in html and "<img" not in html
    for name in NAMES:
        assert f'<td class="file">{escape(str(logs / name))}</td>' in html
        folder = logs / name.removesuffix(".log")
        assert f"<td>{escape(str(folder))}</td>" in html  # a cleanup candidate
    page = tmp_path / "mailed.html"
    page.write_text(html, encoding="utf-8")
    report = open_page(chromium, page, expressions=DOM_QUESTIONS)
    assert (report.values["scripts"], report.values["images"], report.values["handlers"]) == (
        0,
        0,
        0,
    )
    assert report.problems == []
