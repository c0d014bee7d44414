"""Look at a sweep in the real Prefect UI with headless Chromium; save screenshots; check what shows.

    python benchmarks/ui_check.py [--shots /tmp/ui-shots] [--keep]

Starts a Prefect server (temporary home, free 127.0.0.1 port), registers the `batch-study`
deployment (its Custom run form), runs a tiny sweep against it (`python flows/sweep.py`, preset
`default`, models paper and gru_basic x batch sizes 32 and 64, 1 epoch on synthetic data; gru_basic
fails with an injected DataError so the run ends Failed), then drives Chromium over the DevTools
protocol (tests/chromium_cdp.py; no chromedriver) like an operator would:

1. the flow run page: name, Failed, the state message in the header    -> flow-run.png
   and (client) the run's last log line: the one-line summary, no traceback
2. its Artifacts tab: the best-configurations and overview cards        -> artifacts-tab.png
3. the overview artifact: the best configuration per dataset with the varying
   hyperparameter (batch size) visible, the model comparison chart decoded -> overview.png
4. a completed experiment's task run page, Logs tab: its epoch lines     -> task-run-logs.png
5. the batch-study deployment's Custom run form: batch sizes 32..512 filled in -> deployment-form.png
6. report.html at a 1,280 px window: no horizontal scroll                -> report-1280.png

Exit 0 when every check holds, 1 otherwise (each check printed). Needs Chromium (/usr/bin/chromium).
A script and not a test: a few minutes on 2 cores, and the screenshots are meant to be looked at.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from chromium_cdp import Chromium, find_chromium  # noqa: E402

SETTLE = 3.0  # seconds for the UI to draw after the text we wait for appears


def wait_text(browser: Chromium, needle: str, timeout: float = 90) -> bool:
    """Wait until the page's text contains `needle` (the Prefect UI fills in asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in (browser.evaluate("document.body ? document.body.innerText : ''") or ""):
            return True
        time.sleep(0.5)
    return False


def click_text(browser: Chromium, text: str) -> bool:
    """Click the innermost element whose own text is `text`."""
    return bool(
        browser.evaluate(
            "(() => { const all = [...document.querySelectorAll('body *')].filter(e => e.children.length === 0 "
            f"&& e.textContent.trim() === {text!r}); if (!all.length) return false; all[0].click(); return true; }})()"
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="/tmp/ui-shots", help="folder for the screenshots")
    parser.add_argument("--keep", action="store_true", help="leave the server running until Enter")
    args = parser.parse_args(argv)
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    if not find_chromium():
        print("error: Chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    from flows.server import start_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="ddrsa-ui-check-"))
    server, api = start_server(log_path=work / "server.log", home=work / "prefect-home")
    ui = api.removesuffix("/api")
    checks: list[tuple[str, bool, str]] = []
    try:
        out = work / "ui-check"
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "DDRSA_TORCH_THREADS": "1",
            "DDRSA_INJECT_FAULT": "dataerror:gru_basic:*",
        }
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "flows/sweep.py",
                "--preset",
                "default",
                "--datasets",
                "turbofan",
                "--models",
                "paper",
                "gru_basic",
                "--batch-sizes",
                "32",
                "64",
                "--seeds",
                "1",
                "--data-source",
                "synthetic",
                "--max-units",
                "12",
                "--window-stride",
                "8",
                "--lookback-window",
                "32",
                "--pred-horizon",
                "16",
                "--num-epochs",
                "1",
                "--n-workers",
                "1",
                "--output-dir",
                str(out),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        print(f"sweep exited {proc.returncode} after {time.monotonic() - t0:.0f} s")
        checks.append(("sweep command exits 1 (experiments failed)", proc.returncode == 1, proc.stdout[-300:]))

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            LogFilter,
            LogFilterFlowRunId,
            TaskRunFilter,
            TaskRunFilterFlowRunId,
        )
        from prefect.client.schemas.sorting import LogSort
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.analysis import artifact_scope, scoped_key

        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ddrsa-sweep"])))
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
            )
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), sort=LogSort.TIMESTAMP_ASC
            )
            from deployments.serve import build_deployments

            deployment_id = build_deployments(["batch-study"])[0].apply()  # the form to look at (no pool)
        paper = next(t for t in tasks if "/paper/" in t.name)
        last = logs[-1].message if logs else ""
        print(f"flow run {run.name!r}: {run.state.name}: {run.state.message}\nlast log line: {last[:300]!r}")
        checks.append(
            (
                "the run's last log line is a one-line summary, no traceback",
                "Traceback" not in last and "experiments failed" in last,
                last[:300],
            )
        )

        with Chromium(width=1400, height=1600) as browser:
            browser.open(f"{ui}/runs/flow-run/{run.id}")
            checks.append(("flow run page shows the run's name", wait_text(browser, run.name), run.name))
            time.sleep(SETTLE)
            browser.send("Page.bringToFront")
            (shots / "flow-run.png").write_bytes(browser.screenshot())
            body = browser.evaluate("document.body.innerText")
            checks.append(("flow run page shows Failed", "Failed" in body, ""))
            checks.append(
                (
                    "the header shows the state message",
                    (run.state.message or "")[:40] in body,
                    (run.state.message or "")[:80],
                )
            )

            checks.append(("Artifacts tab found", click_text(browser, "Artifacts"), ""))
            scope = artifact_scope("default", out)
            best_key, overview_key = scoped_key(scope, "best-configurations"), scoped_key(scope, "sweep-overview")
            found = wait_text(browser, overview_key, 60)
            time.sleep(SETTLE)
            (shots / "artifacts-tab.png").write_bytes(browser.screenshot())
            body = browser.evaluate("document.body.innerText")
            checks.append((f"{best_key} on the sweep's own run", best_key in body, ""))
            checks.append((f"{overview_key} on the sweep's own run", found, ""))
            click_text(browser, overview_key)
            wait_text(browser, "Best configuration per dataset", 60)
            time.sleep(SETTLE)
            images = browser.evaluate(
                "[...document.images].filter(i => i.src.startsWith('data:image/png')).map(i => [i.alt, i.naturalWidth])"
            )
            checks.append(
                (
                    "overview: model comparison chart decoded by the browser",
                    any(alt == "model_comparison" and w > 0 for alt, w in images),
                    str(images),
                )
            )
            heads = browser.evaluate("[...document.querySelectorAll('table th')].map(t => t.innerText.trim())")
            rows = browser.evaluate("[...document.querySelectorAll('table tr')].map(r => r.innerText)")
            print(f"overview table headers: {heads}; rows: {rows[:3]}")
            checks.append(
                (
                    "overview: best configuration table shows the varying batch size",
                    "batch size" in heads and "winner" in heads,
                    str(heads),
                )
            )
            visible = browser.evaluate(
                "(() => { const th = [...document.querySelectorAll('table th')].find(t => "
                "t.innerText.trim() === 'batch size'); if (!th) return false; const r = "
                "th.getBoundingClientRect(); return r.right <= window.innerWidth; })()"
            )
            checks.append(("overview: the batch size column is on screen without scrolling", bool(visible), ""))
            browser.evaluate("window.scrollTo(0, 0)")
            (shots / "overview.png").write_bytes(browser.screenshot())

            browser.open(f"{ui}/runs/task-run/{paper.id}")
            epoch = wait_text(browser, "epoch 1/1 train", 60)
            time.sleep(SETTLE)
            (shots / "task-run-logs.png").write_bytes(browser.screenshot())
            checks.append(("task run Logs tab shows the epoch lines", epoch, paper.name))

            browser.open(f"{ui}/deployments/deployment/{deployment_id}/run")
            wait_text(browser, "Batch Sizes", 60)
            time.sleep(SETTLE)
            (shots / "deployment-form.png").write_bytes(browser.screenshot(full_page=True))
            values = browser.evaluate("[...document.querySelectorAll('input, textarea')].map(i => i.value)")
            text = browser.evaluate("document.body.innerText")
            print(
                f"deployment form: {text.count('Property is type')} 'Property is type' notes; "
                f"input values: {[v for v in values if v][:30]}"
            )
            checks.append(
                (
                    "deployment form shows batch-study's batch sizes 32..512",
                    all(any(str(b) in v for v in values) or str(b) in text for b in (32, 64, 128, 256, 512)),
                    str(values[:30]),
                )
            )

            browser.send(
                "Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False
            )
            browser.open((out / "report.html").as_uri())
            browser.evaluate("window.ddrsaRenderAll && window.ddrsaRenderAll()")
            browser.evaluate(
                "new Promise(r => { if (window.ddrsaChartsDone) r(1); else document.addEventListener("
                "'ddrsa-charts-done', () => r(1)); })",
                await_promise=True,
                timeout=180,
            )
            widths = browser.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            (shots / "report-1280.png").write_bytes(browser.screenshot())
            checks.append(("report.html at 1,280 px: no horizontal scroll", widths[0] <= widths[1], str(widths)))
    finally:
        if args.keep:
            input(f"UI at {ui}; press Enter to stop the server ")
        stop_server(server)
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail and not ok else ""))
    print(f"screenshots in {shots}: {', '.join(sorted(p.name for p in shots.glob('*.png')))}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
