"""Put named bugs into a temporary copy of the checkout, one at a time, and run the tests that claim
to catch each; print which were caught and the score (issue 29).

    python benchmarks/mutation.py                 # every mutation
    python benchmarks/mutation.py --list
    python benchmarks/mutation.py resume-ignores-checkpoint tpe-maximises

A mutation is (name, file, exact text, replacement, claiming tests). The text must occur exactly
once in the file (a mutation that no longer applies is an error, not a pass). Each is applied to a
fresh copy (the checkout itself is never touched) and each of its claiming tests is run on its own
with `pytest -q -p no:cacheprovider`; caught = pytest exited 1 (tests failed; not an error or a
timeout). A mutation counts as caught when every claiming test caught it. Exit status: 0 when
every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "resume-ignores-checkpoint",
        "ddrsa/trainer.py",
        'state = _load_checkpoint(run_dir / "checkpoint_last.pt", model, optimizer, scheduler)',
        "state = None",
        (
            "tests/test_train.py::test_interrupted_run_resumes_from_last_checkpoint",
            "tests/test_reliability.py::test_resumed_deterministic_run_ends_like_an_uninterrupted_one",
        ),
    ),
    Mutation(
        "code-version-per-process",
        "ddrsa/version.py",
        "    return digest.hexdigest()[:16]",
        "    import os\n    digest.update(str(os.getpid()).encode())\n    return digest.hexdigest()[:16]",
        ("tests/test_reliability.py::test_sigkilled_sweep_resumes_without_retraining_finished_work",),
    ),
    Mutation(
        "cluster-on-finished-rerun",
        "flows/session.py",
        "runner_context = started_runner(self.plan, restart, self.logger) if cluster else contextlib.nullcontext()",
        "runner_context = started_runner(self.plan, restart, self.logger)",
        ("tests/test_fullgrid_cache.py::test_rerun_of_finished_sweep_starts_no_dask_cluster",),
    ),
    Mutation(
        "tpe-maximises",
        "ddrsa/sweep/tpe.py",
        'direction="minimize"',
        'direction="maximize"',
        ("tests/test_search.py::test_tpe_study_minimises_with_tpe_and_successive_halving",),
    ),
    Mutation(
        "tpe-random-sampler",
        "ddrsa/sweep/tpe.py",
        "optuna.samplers.TPESampler(seed=seed, constant_liar=True)",
        "optuna.samplers.RandomSampler(seed=seed)",
        ("tests/test_search.py::test_tpe_study_minimises_with_tpe_and_successive_halving",),
    ),
    Mutation(
        "tpe-no-pruner",
        "ddrsa/sweep/tpe.py",
        "optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=eta)",
        "optuna.pruners.NopPruner()",
        ("tests/test_search.py::test_tpe_study_minimises_with_tpe_and_successive_halving",),
    ),
    Mutation(
        "max-fused-ignored",
        "ddrsa/fused/groups.py",
        "cap = max_fused or default_max_fused(config.model)",
        "cap = default_max_fused(config.model)",
        ("tests/test_fused.py::test_max_fused_caps_the_group_sizes",),
    ),
    Mutation(
        "max-fused-not-passed",
        "flows/sweep_cli.py",
        '_print_groups(planned, params["fuse"], params["max_fused"])',
        '_print_groups(planned, params["fuse"], None)',
        ("tests/test_fused.py::test_max_fused_caps_the_group_sizes",),
    ),
    # the waits that replaced fixed sleeps (issue 29): each negative check must still catch its bug
    Mutation(
        "run-lock-not-waited",
        "ddrsa/run_state.py",
        "                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n                break",
        "                break",
        ("tests/test_features_train.py::test_second_trainer_on_one_folder_waits_for_the_lock",),
    ),
    Mutation(
        "serve-limit-ignored",
        "deployments/serve.py",
        "limit=args.limit, print_starting_message=False",
        "limit=None, print_starting_message=False",
        ("tests/test_features_serve.py::test_serve_limit_1_and_a_launcher_server_run",),
    ),
    Mutation(
        "gpu-limit-not-taken",
        "flows/gpu_limits.py",
        "        slot.enter_context(concurrency(",
        "        (lambda *args, **kwargs: None)(concurrency(",  # made, never entered
        ("tests/test_gpu_limits.py::test_two_concurrent_sweeps_share_one_gpu_limit",),
    ),
    Mutation(
        "packing-ignored",
        "flows/sweep.py",
        "with dask.annotate(resources={plan.resource: plan.per_experiment}):",
        "with dask.annotate(resources={plan.resource: 1}):",
        ("tests/test_sweep.py::test_external_cluster_resource_limits_and_rerun",),
    ),
)


def _copy_checkout(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the checkout, plus a link to its venv."""
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
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if (ROOT / ".venv").exists():
        os.symlink((ROOT / ".venv").resolve(), dest / ".venv")


def apply(mutation: Mutation, tree: Path) -> None:
    path = tree / mutation.path
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(
            f"{mutation.name}: the text to replace occurs {text.count(mutation.old)} times "
            f"in {mutation.path} (the mutation list is out of date)"
        )
    path.write_text(text.replace(mutation.old, mutation.new))


def run_one(mutation: Mutation, timeout: float) -> list[tuple[str, bool, float, str]]:
    """[(test, caught, seconds, pytest's last line)] for `mutation`, each claiming test on its own
    (so every claim is checked, not only the first to fail), all on one fresh mutated copy."""
    out = []
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as tmp:
        tree = Path(tmp)
        _copy_checkout(tree)
        apply(mutation, tree)
        env = {**os.environ, "PYTHONPATH": str(tree), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        for test in mutation.tests:
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                    cwd=tree,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                out.append((test, False, time.monotonic() - t0, "timed out (not counted as caught)"))
                continue
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            why = next((line[:200] for line in lines if line.startswith("E ")), "")  # what failed, to check
            out.append(
                (test, proc.returncode == 1, time.monotonic() - t0, f"{lines[-1] if lines else ''}  {why}".rstrip())
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per mutation")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28s} {m.path}  -> {' '.join(m.tests)}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}")
    chosen = [known[n] for n in args.names] or list(MUTATIONS)
    caught = 0
    for m in chosen:
        results = run_one(m, args.timeout)
        caught += all(ok for _, ok, _, _ in results)
        for test, ok, seconds, last in results:
            print(
                f"{'caught  ' if ok else 'SURVIVED'} {m.name:26s} {test.split('::')[-1]}  {seconds:.0f} s  {last}",
                flush=True,
            )
    print(f"mutation score: {caught}/{len(chosen)} caught by every claiming test")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
