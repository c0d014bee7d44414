"""Headless Chromium driven through the Chrome DevTools Protocol (CDP), for the report's browser
test and the analysis benchmark.

CDP directly rather than Selenium: Chromium alone is enough (no chromedriver whose version must
match), console errors and uncaught exceptions arrive as events (Selenium needs vendor logging
options for them), and the only client needed, `websockets`, is already installed with Prefect.

    with Chromium() as browser:
        browser.open("file:///.../report.html")          # waits for the load event
        browser.evaluate("document.title")
        png = browser.screenshot()
        browser.errors                                    # console errors + uncaught exceptions
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium binary ($CHROMIUM, then the Debian paths), or None."""
    for path in (os.environ.get("CHROMIUM"), *CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


class Chromium:
    """One headless Chromium process with one page, spoken to over CDP."""

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000, timeout: float = 60):
        from websockets.sync.client import connect

        self.binary = binary or find_chromium()
        if not self.binary:
            raise FileNotFoundError("no Chromium binary (install the Debian package chromium)")
        self.profile = tempfile.mkdtemp(prefix="ddrsa-chromium-")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.events: list[dict] = []
        self.errors: list[str] = []
        self._id = 0
        try:
            port = self._port(timeout)
            page = self._page_target(port, timeout)
            self.ws = connect(page, max_size=None, open_timeout=timeout)
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ start-up
    def _port(self, timeout: float) -> int:
        path, deadline = Path(self.profile) / "DevToolsActivePort", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.proc.returncode} at start-up")
            if path.exists() and (text := path.read_text().split()):
                return int(text[0])
            time.sleep(0.05)
        raise TimeoutError("Chromium did not open its DevTools port")

    @staticmethod
    def _page_target(port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise TimeoutError("Chromium has no page target")

    # ------------------------------------------------------------------ protocol
    def _note(self, msg: dict) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console.error: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            self.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        """Send one CDP command and return its result (events met meanwhile are recorded)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._note(msg)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        """Block until the event `method` arrives (one already recorded counts); return its params."""
        for msg in self.events:
            if msg.get("method") == method:
                self.events.remove(msg)
                return msg.get("params", {})
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            self._note(msg)
            if msg.get("method") == method:
                self.events.remove(msg)
                return msg.get("params", {})

    # ------------------------------------------------------------------ page
    def open(self, url: str, timeout: float = 60) -> float:
        """Navigate and wait for the load event; returns the seconds it took."""
        self.events = [m for m in self.events if m.get("method") != "Page.loadEventFired"]
        t0 = time.perf_counter()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)
        return time.perf_counter() - t0

    def evaluate(self, expression: str, await_promise: bool = False, timeout: float = 60):
        """Value of a JavaScript expression in the page (JSON-serialisable values only)."""
        res = self.send(
            "Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:80]}: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res.get("result", {}).get("value")

    def screenshot(self, full_page: bool = False) -> bytes:
        """PNG bytes of the viewport (or of the whole page)."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: Chromium's helper processes too
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pixel_stddev(png: bytes) -> float:
    """Standard deviation of the grey levels (0-255) of a PNG: ~0 for a blank page."""
    import io

    from PIL import Image, ImageStat

    return float(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).stddev[0])
