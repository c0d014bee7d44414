"""Look at a sweep in the real Prefect UI with headless Chromium; save screenshots; check what shows.

    python benchmarks/ui_check.py [--shots /tmp/ui-shots] [--keep]

Starts a Prefect server (temporary home, free 127.0.0.1 port), runs a tiny sweep against it
(`python flows/sweep.py`, preset `default`, 2 experiments of 1 epoch on synthetic data, one of
them failing with an injected DataError so the run ends Failed), then drives Chromium through
chromedriver (W3C WebDriver over plain HTTP: no selenium needed) like an operator would:

1. the flow run page (name, Failed state and its message)        -> flow-run.png
2. its Artifacts tab (the artifact cards of the sweep's run)      -> artifacts-tab.png
3. a click on the `ddrsa-sweep-overview-*` card: the headline, the model comparison chart
   (an inline PNG: checked decoded by the browser, naturalWidth > 0) and the best
   configurations table                                           -> overview.png
4. a completed experiment's task run page, Logs tab: its epoch lines -> task-run-logs.png

Exit 0 when every check holds, 1 otherwise (each check printed). Needs /usr/bin/chromium and
/usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver). A script and not a
test: it takes about a minute on 2 cores (server start, sweep, UI rendering with waits), and
the screenshots are meant to be looked at.
"""
from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Browser:
    """The few WebDriver commands needed here, over HTTP to a chromedriver we start."""

    def __init__(self, width: int = 1400, height: int = 2000):
        from flows.server import free_port

        port = free_port()
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/status", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                         f"--window-size={width},{height}"]}}}}
        session = httpx.post(f"{base}/session", json=caps, timeout=120).json()["value"]
        self.url = f"{base}/session/{session['sessionId']}"

    def cmd(self, method: str, path: str, body: dict | None = None):
        return httpx.request(method, self.url + path, json=body, timeout=120).json()["value"]

    def go(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def find(self, xpath: str, timeout: float = 60) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.cmd("POST", "/elements", {"using": "xpath", "value": xpath})
            if isinstance(found, list) and found:
                return next(iter(found[0].values()))
            time.sleep(0.5)
        return None

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def shot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def close(self) -> None:
        try:
            httpx.delete(self.url, timeout=30)
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)


def text_xpath(text: str) -> str:
    return f"//*[normalize-space(text())='{text}']"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="/tmp/ui-shots", help="folder for the screenshots")
    parser.add_argument("--keep", action="store_true", help="leave the server running until Enter")
    args = parser.parse_args(argv)
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            print(f"error: {tool} not found (apt-get install chromium chromium-driver)", file=sys.stderr)
            return 2
    from flows.server import start_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="ddrsa-ui-check-"))
    server, api = start_server(log_path=work / "server.log", home=work / "prefect-home")
    ui = api.removesuffix("/api")
    checks: list[tuple[str, bool, str]] = []
    browser = None
    try:
        out = work / "ui-check"
        env = {**os.environ, "PREFECT_API_URL": api, "DDRSA_TORCH_THREADS": "1",
               "DDRSA_INJECT_FAULT": "dataerror:gru_basic:*"}
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "flows/sweep.py", "--preset", "default", "--datasets", "turbofan",
                               "--models", "paper", "gru_basic", "--seeds", "1", "--data-source", "synthetic",
                               "--max-units", "12", "--window-stride", "8", "--lookback-window", "32",
                               "--pred-horizon", "16", "--num-epochs", "2", "--n-workers", "1",
                               "--output-dir", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
        print(f"sweep exited {proc.returncode} after {time.monotonic() - t0:.0f} s")
        checks.append(("sweep command exits 1 (one experiment failed)", proc.returncode == 1, proc.stdout[-300:]))

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterFlowRunId
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ddrsa-sweep"])))
            tasks = client.read_task_runs(task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))
        paper = next(t for t in tasks if "/paper/" in t.name)
        print(f"flow run {run.name!r}: {run.state.name}: {run.state.message}")

        browser = Browser()
        browser.go(f"{ui}/runs/flow-run/{run.id}")
        found_name = browser.find(text_xpath(run.name)) is not None
        time.sleep(3)
        browser.shot(shots / "flow-run.png")
        checks.append(("flow run page shows the run's name", found_name, run.name))
        body = browser.js("return document.body.innerText")
        checks.append(("flow run page shows Failed", "Failed" in body, ""))

        tab = browser.find("//*[contains(@class,'p-tabs') or @role='tab' or @role='tablist']"
                           "//*[normalize-space()='Artifacts']")
        checks.append(("Artifacts tab found", tab is not None, ""))
        if tab is not None:
            browser.click(tab)
        key = "ddrsa-sweep-overview-default"
        card = browser.find(text_xpath(key), timeout=60)
        time.sleep(2)
        browser.shot(shots / "artifacts-tab.png")
        checks.append((f"artifact card {key} on the flow run's Artifacts tab", card is not None, ""))
        if card is not None:
            browser.click(card)
        browser.find(text_xpath("Best configurations"), timeout=60)
        time.sleep(3)
        images = browser.js("return Array.from(document.images).filter(i => i.src.startsWith('data:image/png'))"
                            ".map(i => [i.alt, i.naturalWidth, i.naturalHeight, i.width])")
        print(f"inline images on the overview page (alt, natural w, h, shown w): {images}")
        checks.append(("overview: model comparison chart decoded by the browser",
                       any(alt == "model_comparison" and w > 0 for alt, w, _h, _sw in images), str(images)))
        rows = browser.js("return Array.from(document.querySelectorAll('table tr')).map(r => r.innerText)")
        print(f"best configurations table rows: {len(rows)}; first: {rows[:2]}")
        checks.append(("overview: best configurations table has rows",
                       any("paper" in r for r in rows), f"{len(rows)} rows"))
        browser.js("window.scrollTo(0, 0)")
        browser.shot(shots / "overview.png")

        browser.go(f"{ui}/runs/task-run/{paper.id}")
        deadline, epoch = time.monotonic() + 60, None
        while epoch is None and time.monotonic() < deadline:
            text = browser.js("return document.body.innerText")
            epoch = next((line for line in text.splitlines() if "epoch 2/2 train" in line), None)
            time.sleep(0.5)
        print(f"task run log line: {epoch!r}")
        time.sleep(2)
        browser.shot(shots / "task-run-logs.png")
        checks.append(("task run Logs tab shows the epoch lines", epoch is not None, paper.name))
    finally:
        if browser is not None:
            browser.close()
        if args.keep:
            input(f"UI at {ui}; press Enter to stop the server ")
        stop_server(server)
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail and not ok else ""))
    print(f"screenshots in {shots}: {', '.join(sorted(p.name for p in shots.glob('*.png')))}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
