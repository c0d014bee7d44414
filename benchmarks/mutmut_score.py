"""`make mutation`: mutmut over the pure core, one module at a time with that module's fast tests;
prints each module's score and its surviving mutants (issue 29). Not part of `make test`.

    python benchmarks/mutmut_score.py                       # every module below
    python benchmarks/mutmut_score.py ddrsa/sweep/halving.py
    python benchmarks/mutmut_score.py --show                # also print each survivor's diff

Why mutmut (3.x) and not cosmic-ray: mutmut records, in one stats run, which tests call each
function, then runs only those tests for a mutant of that function, in a process forked from one
that has already imported torch and collected the tests; cosmic-ray starts the test command anew
per mutant (torch's import alone is seconds), so on this 2-core machine it is many times slower.

Each module runs in its own scratch copy of the checkout, .mutation/<module>/ (mutmut writes its
mutants/ folder and reads its [tool.mutmut] table in the folder it runs in; the checkout itself is
never touched), with the test selection named in MODULES and `-m "not slow and not realdata"`.
Score = (killed + timeout) / all mutants: a timeout is a mutant that made its tests run past
mutmut's CPU limit (15x their clean time), i.e. hang, which the suite's pytest-timeout fails too;
"no tests" (no fast test reaches the function) and "suspicious" count as survivors. Exit status 0
when every module reaches --target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutation"

# module -> the fast in-process tests that claim it (the tests mirroring the module, plus the few
# others that call it directly; mutmut further narrows each mutant to the tests that reach its
# function). DESELECT: tests that start servers or subprocesses, or train for seconds, whose
# guarantee is about something else (each mutant would pay for them; see BENCHMARKS.md).
MODULES = {
    "ddrsa/losses.py": ["tests/test_loss.py"],
    "ddrsa/metrics.py": ["tests/test_metrics.py", "tests/test_metrics_yardsticks.py"],
    "ddrsa/sweep/halving.py": ["tests/test_search.py"],
    "ddrsa/sweep/spec.py": ["tests/test_params.py", "tests/test_sweep.py"],
    "reports/tables.py": ["tests/test_analysis.py", "tests/test_charts.py"],
    "reports/leaderboard.py": ["tests/test_analysis.py"],
}
DESELECT = [
    "tests/test_loss.py::test_member_axis_loss_is_each_member_s_ddrsa_loss",  # fused engine, ~10 s
    "tests/test_params.py::test_deployment_schema_on_a_real_server_carries_descriptions_and_validates",
    "tests/test_analysis.py::test_cli_rejects_bad_output_dir",  # subprocesses: the CLI's input checks
    "tests/test_analysis.py::test_partial_and_crashed_folders",  # charts of whole folders
    "tests/test_charts.py::test_every_chart_renders_png_and_html",  # PNG rendering
]
MARKERS = "not slow and not realdata"
# exit codes in mutmut's .meta files (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}


def _copy_checkout(dest: Path) -> list[str]:
    """Tracked and untracked-not-ignored files into `dest`; returns the top-level names."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    top = set()
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
            top.add(name.split("/")[0])
    return sorted(top)


def _mutmut_table(module: str, tests: list[str], top: list[str]) -> str:
    also = [t for t in top if t not in ("pyproject.toml", "tests")]
    deselect = [a for d in DESELECT if d.split("::")[0] in tests for a in ("--deselect", d)]
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {json.dumps([module])}\n"
        f"also_copy = {json.dumps(also)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        f"pytest_add_cli_args = {json.dumps(['-m', MARKERS, '-p', 'no:xdist', '-p', 'no:cacheprovider', *deselect])}\n"
        # torch in the test process: fork from a server that imported nothing else first
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
    )


def run_module(module: str, tests: list[str], max_children: int) -> dict:
    """Run mutmut on `module` in a fresh scratch copy; {status: [mutant names]} plus timing."""
    work = SCRATCH / module.replace("/", "_").removesuffix(".py")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    top = _copy_checkout(work)
    with open(work / "pyproject.toml", "a") as f:
        f.write(_mutmut_table(module, tests, top))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CI")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DDRSA_TORCH_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - t0
    (work / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
    meta = work / "mutants" / f"{module}.meta"
    if proc.returncode != 0 or not meta.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise SystemExit(f"mutmut failed on {module} (exit {proc.returncode}); log {work}/mutmut-run.log\n{tail}")
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    by_status: dict[str, list[str]] = {"killed": [], "timeout": [], "survived": []}
    for name, code in sorted(codes.items()):
        key = "killed" if code in KILLED else "timeout" if code in TIMEOUT else "survived"
        by_status[key].append(name if code in KILLED | TIMEOUT | {0} else f"{name} (exit {code})")
    return {"module": module, "work": work, "seconds": seconds, **by_status}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: {' '.join(MODULES)}")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--target", type=float, default=0.90, help="score every module must reach")
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a module of the mutation target: {', '.join(unknown)} (known: {' '.join(MODULES)})")
    ok = True
    rows = []
    for module in args.modules or list(MODULES):
        r = run_module(module, MODULES[module], args.max_children)
        caught = len(r["killed"]) + len(r["timeout"])
        total = caught + len(r["survived"])
        score = caught / total if total else 1.0
        ok &= score >= args.target
        rows.append((module, caught, total, score, r["seconds"]))
        print(
            f"{module}: {caught}/{total} killed ({score:.1%}; {len(r['timeout'])} by timeout) "
            f"in {r['seconds'] / 60:.1f} min",
            flush=True,
        )
        for name in r["survived"]:
            print(f"  survived  {name}", flush=True)
            if args.show:
                diff = subprocess.run(
                    [sys.executable, "-m", "mutmut", "show", name.split(" ")[0]],
                    cwd=r["work"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                print("    " + diff.strip().replace("\n", "\n    "), flush=True)
    killed, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"total: {killed}/{total} killed ({killed / max(total, 1):.1%}), "
        f"{sum(r[4] for r in rows) / 60:.1f} min; target {args.target:.0%} per module: {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
