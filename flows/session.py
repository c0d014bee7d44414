"""One sweep's life, shared by the grid (flows/grid.py) and the adaptive searches
(flows/search.py): the cluster plan, the --fresh wipe, the results store, the train task's
options, the manifest, the GPU monitor and the task runner, and the final analysis."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import dask

from ddrsa.sweep.results import JOURNAL, RESULTS, ResultsStore, now_iso, safe_run_dir
from ddrsa.version import code_version
from flows.cluster import plan_cluster
from flows.gpu_monitor import GpuMonitor
from flows.runner import started_runner
from flows.tasks import result_storage, train_experiment


class SweepSession:
    """The parts of one `ddrsa-sweep` flow run that do not depend on how experiments are chosen.

    `planned`: the grid's experiments (ddrsa/sweep/spec.py `PlannedExperiment`); `data_versions`:
    flows/prepare.py `data_key` -> data version. The keyword options are SweepOptions fields."""

    def __init__(
        self,
        spec,
        planned,
        data_versions: dict,
        out: Path,
        logger,
        *,
        gpus_per_experiment: float = 1.0,
        scheduler_address: str | None = None,
        n_workers: int | None = None,
        fresh: bool = False,
        run_analysis: bool = True,
        append_to_history: bool = False,
        preset: str | None = None,
        experiment_timeout: float | None = None,
    ):
        self.spec, self.planned, self.data_versions = spec, planned, data_versions
        self.out, self.logger, self.preset = out, logger, preset
        self.gpus_per_experiment, self.n_workers = gpus_per_experiment, n_workers
        self.scheduler_address = scheduler_address
        self.fresh, self.run_analysis, self.append_to_history = fresh, run_analysis, append_to_history
        self.experiment_timeout = experiment_timeout
        self.version = code_version()
        self.plan = plan_cluster(gpus_per_experiment, scheduler_address, n_workers)
        self.store: ResultsStore | None = None

    def wipe_if_fresh(self, files: tuple[str, ...] = (), folders: tuple[str, ...] = ()) -> None:
        """--fresh: empty every planned run folder and `folders`, and delete the records (the
        results file and its journal) and `files` of OUTPUT_DIR."""
        if not self.fresh:
            return
        for item in self.planned:
            shutil.rmtree(safe_run_dir(self.out, item.run_dir), ignore_errors=True)
        for folder in folders:
            shutil.rmtree(self.out / folder, ignore_errors=True)
        for name in (RESULTS, JOURNAL, *files):
            (self.out / name).unlink(missing_ok=True)

    def open_store(self) -> ResultsStore:
        self.store = ResultsStore(self.out)
        return self.store

    def manifest(self, **extra) -> dict:
        """The keyword arguments of `write_manifest` this sweep shares with each rewrite of it."""
        return dict(
            grid=self.spec.grid(),
            code_version=self.version,
            data_versions=self.data_versions,
            started_at=now_iso(),
            extra={
                "preset": self.preset,
                "spec": self.spec.model_dump(mode="json"),
                "cluster": self.plan.description,
                **extra,
            },
        )

    def task(self):
        """The train task with this sweep's result storage, --fresh and --experiment-timeout."""
        return train_experiment.with_options(
            result_storage=result_storage(self.out), refresh_cache=self.fresh, timeout_seconds=self.experiment_timeout
        )

    def parameters(self, item: dict, data_version: str, **more) -> dict:
        """The train task's parameters for the planned experiment `item` (`PlannedExperiment.as_dict()`)."""
        return dict(
            name=item["name"],
            planned=item,
            output_dir=str(self.out),
            code_version=self.version,
            data_version=data_version,
            gpus_per_experiment=self.gpus_per_experiment,
            **more,
        )

    @contextlib.contextmanager
    def running(self, cluster: bool = True):
        """The GPU monitor and the started task runner (None when `cluster` is False: nothing to
        train); the results store is closed on the way out, even after Ctrl-C (every record in
        all_results.json; a SIGKILL leaves the journal)."""
        restart = (
            None if self.scheduler_address else lambda: plan_cluster(self.gpus_per_experiment, None, self.n_workers)
        )
        runner_context = started_runner(self.plan, restart, self.logger) if cluster else contextlib.nullcontext()
        with GpuMonitor(self.out, devices=self.plan.devices), runner_context as runner:
            try:
                yield runner
            finally:
                if self.store is not None:
                    self.store.close()

    def submit(self, runner, task_fn, parameters: dict, whole_worker: bool = False):
        """Submit one task asking the cluster for one experiment's share (or a whole worker)."""
        amount = 1 if whole_worker else self.plan.per_experiment
        with dask.annotate(resources={self.plan.resource: amount}):
            return runner.submit(task_fn, parameters=parameters)

    def analyse(self, summary: dict) -> dict:
        """`summary` with the analysis subflow's result under "analysis" (unless --no-analysis), and
        with --refit the model packages of the winners it chose under "packages" (ddrsa/refit.py)."""
        if self.run_analysis:
            from flows.analysis import analysis_flow

            summary["analysis"] = analysis_flow(
                output_dir=str(self.out), append_to_history=self.append_to_history, run_label=self.preset
            )
        if self.spec.refit:  # after the analysis: it chose the winners (best_configurations.csv)
            from ddrsa.refit import refit_winners

            summary["packages"] = refit_winners(self.out)
        return summary
