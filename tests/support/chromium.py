"""Headless Debian Chromium driven over the DevTools protocol on a pipe, for report checks.

``open_page(path)`` loads a local file and returns every request the page made (the
Network domain sees even those a Content-Security-Policy blocks), every console message,
log entry and uncaught exception, answers to DOM questions, a full-page PNG and the
printed PDF. The protocol runs on ``--remote-debugging-pipe`` (file descriptors 3 and 4),
so no port is opened and nothing but the page's own file is loaded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-pipe",
)


@dataclass
class PageReport:
    url: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(
        default_factory=list
    )  # console errors, error log entries, exceptions
    values: dict[str, Any] = field(default_factory=dict)  # answers to the expressions asked
    png: bytes = b""
    pdf: bytes = b""


class DevTools:
    """One Chromium process and its protocol pipe; events are kept as they arrive."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="watcher-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=wire,  # noqa: PLW1509 - the protocol pipe must sit on fds 3 and 4
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._read_until(lambda m: m.get("id") == self._next_id, f"the answer to {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for_event(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        return self._read_until(lambda m: m.get("method") == method, method)

    def _read_until(self, wanted: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium gave no {what} within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    err = (
                        self.process.stderr.read().decode(errors="replace")[-2000:]
                        if self.process.stderr
                        else ""
                    )
                    raise RuntimeError(f"Chromium closed the pipe while waiting for {what}: {err}")
                self._buffer += chunk

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                    self.call("Browser.close")
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        finally:
            for fd in (self._to_browser, self._from_browser):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self.process.stderr:
                self.process.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def open_page(
    binary: str,
    path: Path | str,
    *,
    expressions: dict[str, str] | None = None,
    width: int = 1100,
    cookies: list[dict[str, Any]] | None = None,
) -> PageReport:
    """Loads ``path`` (a file, or an http:// URL on loopback) and reports what it did.
    ``expressions``: name -> JavaScript to evaluate (a promise is awaited); ``cookies``:
    set before loading, as DevTools' ``Network.setCookie`` takes them."""
    url = path if isinstance(path, str) else path.resolve().as_uri()
    report = PageReport(url)
    browser = DevTools(binary)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Network", "Runtime", "Log", "Page"):
            browser.call(f"{domain}.enable", session=session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
            session,
        )
        for cookie in cookies or []:
            browser.call("Network.setCookie", cookie, session)
        browser.call("Page.navigate", {"url": url}, session)
        browser.wait_for_event("Page.loadEventFired")
        for name, expression in (expressions or {}).items():
            answer = browser.call(
                "Runtime.evaluate",
                {"expression": expression, "returnByValue": True, "awaitPromise": True},
                session,
            )
            report.values[name] = answer.get("result", {}).get("value")
        metrics = browser.call("Page.getLayoutMetrics", session=session)
        height = int(
            metrics.get("cssContentSize", metrics.get("contentSize", {})).get("height", 900)
        )
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            session,
        )
        shot = browser.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session
        )
        report.png = base64.b64decode(shot["data"])
        browser.call("Emulation.clearDeviceMetricsOverride", session=session)
        pdf = browser.call(
            "Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True}, session
        )
        report.pdf = base64.b64decode(pdf["data"])
        # one more round trip so that late events (a blocked load's report) are read
        browser.call("Runtime.evaluate", {"expression": "1"}, session)
    finally:
        browser.close()
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            report.requests.append(params["request"]["url"])
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            report.problems.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in (
            "error",
            "warning",
            "assert",
        ):
            report.problems.append(f"console {params['type']}: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            report.problems.append(f"exception: {params['exceptionDetails']}")
    return report
