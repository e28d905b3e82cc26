"""Verb `render-report`: open an HTML report in headless Chromium, click through it, save screenshots.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on fd 3,
replies on fd 4, NUL-separated JSON), so nothing beyond the browser binary is needed. Used to look at
`snakemake --report` output, which is a single-page app (tables and figures appear only after clicks).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
# JS: click the first visible element (document order: menus before content) whose own text is exactly `text`;
# in a result row
# of a Snakemake report, click the row's view (eye) button instead
CLICK = """(text) => {
  const all = [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null
      && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim() === text));
  if (!all.length) return false;
  const row = all[0].closest('tr');
  const eye = row && row.querySelector('a[iconname="eye"]');
  if (eye) { eye.click(); return true; }  // a result row of a Snakemake report: open the item
  let el = all[0];
  while (el && !(el.onclick || el.tagName === 'A' || el.tagName === 'BUTTON' || el.tagName === 'TR'
         || getComputedStyle(el).cursor === 'pointer')) el = el.parentElement;
  (el || all[all.length - 1]).click();
  return true;
}"""


class BrowserError(RuntimeError):
    """Chromium missing, crashed, or a DevTools command failed; the message says which."""


def find_chromium() -> str | None:
    """Path of a Chromium binary (Debian's /usr/bin/chromium, or chromium / chromium-browser on PATH)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """One headless browser with one page, driven over the DevTools pipe."""

    def __init__(self, width: int = 1400, height: int = 1000, binary: str | None = None) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.proc = self._spawn(binary, width, height, to_chrome_r, from_chrome_w)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _spawn(self, binary: str, width: int, height: int, read_end: int, write_end: int) -> subprocess.Popen:
        def child() -> None:  # runs before Popen closes other fds: put our pipe ends at 3 and 4
            a, b = os.dup(read_end), os.dup(write_end)
            os.dup2(a, 3)
            os.dup2(b, 4)

        return subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def _read(self, timeout: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {timeout:.0f} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float = 60) -> dict[str, Any]:
        """Send one DevTools command and return its result (events met meanwhile are kept in `events`)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str, settle: float = 1.5) -> None:
        """Navigate and wait for the load event, then `settle` seconds for scripts to render."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: no load event within 60 s")
            self.events.append(self._read(60))
        time.sleep(settle)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def click(self, text: str, settle: float = 1.0) -> bool:
        """Click the element showing exactly `text`; False if there is none."""
        found = bool(self.evaluate(f"({CLICK})({json.dumps(text)})"))
        time.sleep(settle)
        return found

    def text(self) -> str:
        """The page's visible text, plus the markup of iframes showing base64 data: URLs (report items)."""
        page = self.evaluate("document.body.innerText") or ""
        frames = self.evaluate("[...document.querySelectorAll('iframe')].map(f => f.src)") or []
        shown = [base64.b64decode(src.split(";base64,", 1)[1]).decode("utf-8", "replace")
                 for src in frames if ";base64," in src]
        return "\n".join([page, *shown])

    def screenshot(self, path: str | Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_report(html: str, out_dir: str, clicks: list[str] | None = None) -> None:
    """Screenshot a Snakemake HTML report: the start page, then after each click path ("Tables>superb" clicks
    "Tables" then "superb"); writes out_dir/<n>.png and out_dir/<n>.txt (the visible text)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = Path(html).resolve().as_uri()
    with Chromium() as browser:
        browser.open(url)
        browser.screenshot(out / "0-start.png")
        (out / "0-start.txt").write_text(browser.text())
        for i, path in enumerate(clicks or [], start=1):
            browser.open(url)
            for step in path.split(">"):
                if not browser.click(step):
                    raise BrowserError(f"{html}: nothing labelled {step!r} to click (path {path!r})")
            name = f"{i}-{path.replace('>', '-').replace(' ', '_')}"
            browser.screenshot(out / f"{name}.png")
            (out / f"{name}.txt").write_text(browser.text())
            log.info("%s -> %s.png", path, name)
