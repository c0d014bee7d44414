"""Fused training (ddrsa/fused): a fused member is its separate run.

Reference = the separate trainer (`ddrsa.trainer.train`, nn.LSTM/nn.GRU modules, torch.optim.Adam,
clip_grad_norm_), an independent code path from the fused engine's block-diagonal RNN kernels,
stacked Adam and per-member clipping. Tolerance: 1e-5 relative (1e-7 absolute for values near 0)
for the training trajectory (per-epoch losses, learning rates); 5e-5 for the evaluation metrics
computed from the final model. Separate and fused runs differ only in floating-point summation
order (block-diagonal matmuls add exact zeros in another order, the "bmm" recurrence adds the
input and recurrent products separately, batched norms reduce in another order): ~1e-7 per step,
measured worst over 5 epochs (2026-11-30): losses 1.9e-6 relative; metrics 1.8e-6 (blockdiag) and
8.9e-6 (bmm: lstm_basic's early stopper, its validation NASA score and RUL MAE, which go through
the expected-RUL sum and exp(): they amplify the final weights' 2e-6). The member that stops early has the largest
learning rate (5e-2 for paper, 1e-2 for lstm_basic): at 5e-2 lstm_basic's training on this tiny set
is chaotic and 1e-7 rounding grows into another early-stopping epoch (measured), which says
nothing about the engine.

Bugs tried (`python benchmarks/mutation.py NAME`, caught by test_max_fused_caps_the_group_sizes):
max-fused-ignored (plan_groups uses the default cap), max-fused-not-passed (the dry run ignores
--max-fused).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ddrsa.config import ExperimentConfig
from ddrsa.errors import DDRSAError
from ddrsa.fused import fusable, group_key, train_group
from ddrsa.fused.stacked import RECURRENCES, stacked_rnn
from ddrsa.models import SeededDropout, build_model, set_generator
from ddrsa.settings import Settings
from ddrsa.trainer import train

SYNTHETIC = Settings(data_source="synthetic")
BASE = dict(
    data_source="synthetic",
    max_units=12,
    window_stride=8,
    lookback_window=32,
    pred_horizon=16,
    batch_size=64,
    num_epochs=5,
    patience=1,
)
# learning rate, lambda, dropout rate and seed all differ, NASA weights zero and non-zero; member 2
# stops early. Its learning rate (>= 5e-3: chaotic, SCIENCE-NOTES) grows rounding differences between
# the two code paths ~10x per epoch, so its losses are compared at REL_CHAOTIC, and it trains without
# the NASA term: with the bounded term (NASA loss version 2) at weight 0.3 its epoch-3 validation loss
# differed by 18% between the paths (the unbounded version 1 clipped every step, which hid it).
MEMBERS = [
    dict(learning_rate=1e-3, lambda_param=0.75, nasa_weight=0.1, dropout=0.1, seed=1),
    dict(learning_rate=3e-3, lambda_param=0.5, nasa_weight=0.0, dropout=0.0, seed=2),
    dict(learning_rate=1e-2, lambda_param=0.3, nasa_weight=0.0, dropout=0.3, seed=3),
    dict(learning_rate=1e-4, lambda_param=0.9, nasa_weight=0.05, dropout=0.2, seed=4),
]
REL, ABS = 1e-5, 1e-7
REL_METRICS = 5e-5
REL_CHAOTIC, CHAOTIC_LR = 1e-3, 5e-3  # measured worst 4e-5 (2026-12-08, lstm_basic at 5e-3 and 1e-2)


@pytest.fixture()
def torch_state():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def _epochs(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "training_log.json").read_text())["epochs"]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    metrics.pop("train_seconds")
    return metrics


def _close(a, b, rel: float = REL) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= max(rel * abs(a), ABS)
    return a == b


def _assert_same_run(separate: Path, fused: Path, chaotic: bool = False) -> None:
    a, b = _epochs(separate), _epochs(fused)
    assert [e["epoch"] for e in a] == [e["epoch"] for e in b]
    for ea, eb in zip(a, b):
        for key in ("train_loss", "val_loss", "learning_rate"):
            assert _close(ea[key], eb[key], REL_CHAOTIC if chaotic else REL), (
                separate.name,
                ea["epoch"],
                key,
                ea[key],
                eb[key],
            )
    ma, mb = _metrics(separate), _metrics(fused)
    assert set(ma) == set(mb)
    bad = {k: (ma[k], mb[k]) for k in ma if not _close(ma[k], mb[k], REL_CHAOTIC if chaotic else REL_METRICS)}
    assert not bad, bad
    la, lb = (json.loads((d / "training_log.json").read_text()) for d in (separate, fused))
    for key in ("best_epoch", "stopped_early", "status"):
        assert la[key] == lb[key]


def _assert_group_equals_separate_runs(tmp_path: Path, configs: list, **group_kwargs) -> tuple[list, list]:
    """Train each config alone (into sep{i}) and all of them as one group (into fused{i}); assert
    every member's run equals its separate run. Returns (separate results, fused results)."""
    separate = [train(c, tmp_path / f"sep{i}", settings=SYNTHETIC) for i, c in enumerate(configs)]
    fused = train_group(
        configs, [tmp_path / f"fused{i}" for i in range(len(configs))], settings=SYNTHETIC, **group_kwargs
    )
    for i in range(len(configs)):
        _assert_same_run(tmp_path / f"sep{i}", tmp_path / f"fused{i}", configs[i].learning_rate >= CHAOTIC_LR)
    return separate, fused


@pytest.mark.parametrize("recurrence", RECURRENCES)
@pytest.mark.parametrize("model, stopper_lr", [("paper", 5e-2), ("lstm_basic", 1e-2)])
def test_fused_group_equals_separate_runs(tmp_path, torch_state, model, stopper_lr, recurrence):
    members = [dict(m, learning_rate=stopper_lr) if i == 2 else m for i, m in enumerate(MEMBERS)]
    configs = [ExperimentConfig(**BASE, **m, model=model) for m in members]
    separate, fused = _assert_group_equals_separate_runs(tmp_path, configs, recurrence=recurrence)
    lengths = [r.epochs_trained for r in separate]
    assert min(lengths) < BASE["num_epochs"] == max(lengths)  # one stopped early, others went on
    for i, (s, f) in enumerate(zip(separate, fused)):
        assert (f.status, f.epochs_trained, f.best_epoch) == (s.status, s.epochs_trained, s.best_epoch)
        assert set(f.to_dict()) == set(s.to_dict())
        assert f.metrics.keys() == s.metrics.keys()
        assert sorted(p.name for p in (tmp_path / f"fused{i}").iterdir()) == sorted(
            p.name for p in (tmp_path / f"sep{i}").iterdir()
        )


def test_fused_transformer_group_equals_separate_runs(tmp_path, torch_state):
    """transformer_basic members (stacked pre-norm encoder: batched-matmul attention with each
    member's key padding and attention-weight dropout, GELU feed-forward; GRU decoder; the
    warm-up + cosine learning-rate schedule stepped after every training step) equal their
    separate runs over 3 epochs (measured worst 3.7e-6 relative on losses, 2026-11-30)."""
    configs = [
        ExperimentConfig(**{**BASE, "num_epochs": 3, "patience": 5}, **m, model="transformer_basic") for m in MEMBERS
    ]
    _assert_group_equals_separate_runs(tmp_path, configs)


@pytest.mark.parametrize("recurrence", RECURRENCES)
def test_fused_deep_gru_group_equals_separate_runs(tmp_path, torch_state, recurrence):
    """The deep path (input projection, LayerNorm + residual RNN blocks, a 2-layer decoder whose
    second layer reads the first's output sequence) with GRU cells: 2 members, 2 epochs. Members
    with learning rates 1e-3 and 1e-4: at 1e-2 this model's training on the tiny set amplifies
    rounding by ~1000x within 2 epochs in the separate trainer itself (1 vs 2 torch threads: val
    loss 2.6e-4 apart, measured 2026-11-30), which says nothing about the engine."""
    configs = [
        ExperimentConfig(**{**BASE, "num_epochs": 2, "patience": 5}, **m, model="gru_deep")
        for m in (MEMBERS[0], MEMBERS[3])
    ]
    _assert_group_equals_separate_runs(tmp_path, configs, recurrence=recurrence)


@pytest.mark.parametrize("recurrence", RECURRENCES)
@pytest.mark.parametrize("cell, constant_input", [("lstm", False), ("gru", False), ("lstm", True), ("gru", True)])
def test_stacked_rnn_layer_is_each_member_s_torch_rnn(torch_state, cell, constant_input, recurrence):
    """One stacked layer of 3 members = each member's own nn.LSTM/nn.GRU (PyTorch's kernels, the
    reference): outputs and the gradients of a loss with respect to inputs, initial state and every
    weight, with an initial state (the decoder's case) and without (the encoder's); the constant
    input is the decoder's z fed at every step."""
    g = torch.Generator().manual_seed(0)
    m, b, t, i, h = 3, 5, 7, 4, 6
    rnns = [(torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(i, h, batch_first=True) for _ in range(m)]
    for rnn in rnns:
        for p in rnn.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
    x = torch.randn(m, b, i if constant_input else t * i, generator=g).view(m, b, *(() if constant_input else (t,)), i)
    h0 = torch.randn(m, b, h, generator=g)
    hx = (h0, torch.randn(m, b, h, generator=g)) if cell == "lstm" else h0
    weights = torch.randn(m, b, t, h, generator=g)  # a loss that weighs every output differently

    for state in (hx, None):
        inputs = [x] + (list(hx) if cell == "lstm" else [hx]) * (state is not None)
        inputs = [v.detach().requires_grad_(True) for v in inputs]
        xin = inputs[0]
        given = None if state is None else (tuple(inputs[1:]) if cell == "lstm" else inputs[1])
        params = {
            n: torch.stack([dict(r.named_parameters())[n] for r in rnns]).detach().requires_grad_(True)
            for n in dict(rnns[0].named_parameters())
        }
        out = stacked_rnn(cell, params, "", xin, given, recurrence, t if constant_input else None)
        (out * weights).sum().backward()
        for r in rnns:
            r.zero_grad()
        refs = []
        for k in range(m):
            xs = x[k].detach().clone().requires_grad_(True)
            xk = xs.unsqueeze(1).expand(b, t, i) if constant_input else xs
            st = (
                None
                if state is None
                else (
                    tuple(s[k].detach().unsqueeze(0).clone().requires_grad_(True) for s in hx)
                    if cell == "lstm"
                    else hx[k].detach().unsqueeze(0).clone().requires_grad_(True)
                )
            )
            y = rnns[k](xk, st)[0]
            (y * weights[k]).sum().backward()
            refs.append((y, xs, st))
        for k, (y, xs, st) in enumerate(refs):
            torch.testing.assert_close(out[k], y, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(xin.grad[k], xs.grad, rtol=1e-5, atol=1e-6)
            if state is not None:
                for got, want in zip(inputs[1:], st if cell == "lstm" else (st,)):
                    torch.testing.assert_close(got.grad[k], want.grad[0], rtol=1e-5, atol=1e-6)
            for n, p in rnns[k].named_parameters():
                torch.testing.assert_close(params[n].grad[k], p.grad, rtol=1e-5, atol=1e-6)


def test_killed_group_resumes_each_member_from_its_checkpoint(tmp_path, torch_state):
    """A group that dies mid-epoch (members left at different epochs) resumes to the result of an
    uninterrupted group; a finished member is not trained again."""
    configs = [ExperimentConfig(**{**BASE, "num_epochs": 4}, **m, model="paper") for m in MEMBERS[:3]]
    whole = [tmp_path / f"whole{i}" for i in range(3)]
    train_group(configs, whole, settings=SYNTHETIC)
    dirs = [tmp_path / f"killed{i}" for i in range(3)]

    def die(member: int, entry: dict) -> None:
        if member == 1 and entry["epoch"] == 2:
            raise KeyboardInterrupt  # as a SIGINT: member 0 and 1 at epoch 2, member 2 at epoch 1

    with pytest.raises(KeyboardInterrupt):
        train_group(configs, dirs, settings=SYNTHETIC, on_epoch=die)
    assert [len(_epochs(d)) for d in dirs] == [2, 2, 1]
    results = train_group(configs, dirs, settings=SYNTHETIC)
    assert [r.resumed_from_epoch for r in results] == [2, 2, 1]
    for a, b in zip(whole, dirs):
        _assert_same_run(a, b)
    # everything finished: a third call trains no epoch and keeps every result
    before = [(d / "checkpoint_last.pt").stat().st_mtime_ns for d in dirs]
    again = train_group(configs, dirs, settings=SYNTHETIC)
    assert [(d / "checkpoint_last.pt").stat().st_mtime_ns for d in dirs] == before
    assert [r.epochs_trained for r in again] == [r.epochs_trained for r in results]


def test_separate_trainer_resumes_a_fused_checkpoint(tmp_path, torch_state):
    """Checkpoints are the separate trainer's format: a member started fused can finish alone."""
    config = ExperimentConfig(**{**BASE, "num_epochs": 3}, **MEMBERS[0], model="paper")
    whole, mixed = tmp_path / "whole", tmp_path / "mixed"
    train(config, whole, settings=SYNTHETIC)

    def die(member: int, entry: dict) -> None:
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_group([config], [mixed], settings=SYNTHETIC, on_epoch=die)
    result = train(config, mixed, settings=SYNTHETIC)
    assert result.resumed_from_epoch == 2
    _assert_same_run(whole, mixed)


def test_group_rules():
    a = ExperimentConfig(**BASE, model="paper", seed=1, learning_rate=0.01)
    assert group_key(a) == group_key(a.model_copy(update={"seed": 2, "dropout": 0.3, "nasa_weight": 0.0}))
    assert group_key(a) != group_key(a.model_copy(update={"batch_size": 32}))
    assert fusable(a) and fusable(a.model_copy(update={"model": "transformer_basic"}))
    assert not fusable(a.model_copy(update={"model": "probsparse_basic"}))  # random key sampling
    assert not fusable(a.model_copy(update={"compile": True}))
    with pytest.raises(DDRSAError, match="differ only"):
        train_group([a, a.model_copy(update={"batch_size": 32})], ["x", "y"], settings=SYNTHETIC)


def test_max_fused_caps_the_group_sizes(tmp_path, capsys):
    """`--max-fused 4` on 6 paper experiments of one group key: two groups of 3 (split evenly) in
    the dry run and in the planner; without it one group of 6 (the default cap is 64). Bugs tried
    (benchmarks/mutation.py): the cap ignored in plan_groups, --max-fused not passed to the dry run."""
    from ddrsa.fused.groups import plan_groups
    from flows.sweep_cli import preflight

    grid = [
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "--seeds",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "--data-source",
        "synthetic",
        "--fuse",
        "on",
        "--output-dir",
        str(tmp_path / "o"),
        "--dry-run",
    ]
    sizes = {}
    for cap in ([], ["--max-fused", "4"]):
        assert preflight([*grid, *cap]) is None
        dry = capsys.readouterr().out
        sizes[bool(cap)] = [
            line.split(":")[0].rsplit(" x", 1)[1] for line in dry.splitlines() if line.startswith("  fused  ")
        ]
    assert sizes == {False: ["6"], True: ["3", "3"]}, sizes
    items = [{"experiment_id": f"e{i}", "index": i, "config": {**BASE, "model": "paper", "seed": i}} for i in range(7)]
    for cap, expected in ((None, [7]), (2, [2, 2, 2]), (3, [3, 3]), (7, [7])):
        groups, singles = plan_groups(items, "on", "cpu", cap)
        assert [len(g["members"]) for g in groups] == expected, cap
        placed = [m["index"] for g in groups for m in g["members"]] + [s["index"] for s in singles]
        assert sorted(placed) == list(range(7)), cap  # each experiment exactly once


def test_random_streams_ignore_the_global_rng(torch_state):
    """Init and dropout draw from the experiment's generators only: the global RNG state (what
    another experiment in the same process would move) changes nothing."""

    def run(global_seed: int):
        torch.manual_seed(global_seed)
        model = build_model("lstm_deep", 5, 8, 0.3, generator=torch.Generator().manual_seed(7))
        set_generator(model, torch.Generator().manual_seed(11))
        x, mask = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0)), torch.ones(3, 6, dtype=torch.bool)
        return torch.nn.utils.parameters_to_vector(model.parameters()), model.train()(x, mask)

    (p1, y1), (p2, y2) = run(0), run(123)
    assert torch.equal(p1, p2) and torch.equal(y1, y2)
    assert any(
        isinstance(m, SeededDropout) and m.p == 0.3 for m in build_model("lstm_deep", 5, 8, 0.3).decoder.modules()
    )  # inter-layer dropout is seeded
    other = build_model("lstm_deep", 5, 8, 0.3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(p1, torch.nn.utils.parameters_to_vector(other.parameters()))


@pytest.mark.slow
def test_fused_sweep_writes_one_record_per_member_and_reruns_nothing(tmp_path, prefect_server, capsys):
    """`--fuse on`: the four paper grid points train as one task `turbofan/paper/bs128 x4`, each
    with its own record and run folder, while the unfusable ProbSparse experiment trains on the
    other worker at the same time; the same command again retrains nothing."""
    from tests.conftest import TINY, read_results, run_cli

    out = tmp_path / "sweep"
    grid = [
        "flows/sweep.py",
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "probsparse_basic",
        "--learning-rates",
        "1e-3",
        "3e-3",
        "--seeds",
        "1",
        "2",
        *TINY,
        "--fuse",
        "on",
        "--n-workers",
        "2",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    from flows.sweep_cli import preflight

    assert preflight([*grid[1:], "--dry-run"]) is None  # in-process: a subprocess costs seconds
    dry = capsys.readouterr().out
    assert "fused  turbofan/paper/bs128 x4: experiments 0 1 2 3" in dry, dry
    assert "unfused: 4 experiment(s) of probsparse_basic" in dry
    first = run_cli(grid, check=True)
    assert "1 fused group(s): turbofan/paper/bs128 x4" in first.stdout
    records = {r["experiment_id"]: r for r in read_results(out)}
    assert len(records) == 8 and all(r["status"] == "completed" and r["metrics"] for r in records.values())
    assert len({r["run_dir"] for r in records.values()}) == 8
    fused = [r for r in records.values() if r["model"] == "paper"]
    alone = [r for r in records.values() if r["model"] == "probsparse_basic"]
    for r in fused:
        run_dir = out / r["run_dir"]
        assert len(_epochs(run_dir)) == r["epochs_trained"] == 2
        assert (run_dir / "checkpoint_last.pt").is_file() and (run_dir / "test_metrics.json").is_file()
    # side by side: the first ProbSparse experiment started before the group finished
    group_start, group_end = fused[0]["started_at"], fused[0]["finished_at"]
    assert min(r["started_at"] for r in alone) < group_end and group_start < max(r["finished_at"] for r in alone)
    assert {r["worker"] for r in fused}.isdisjoint({min(alone, key=lambda r: r["started_at"])["worker"]})
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("logs/**/*.pt")}
    again = run_cli(grid, check=True)
    assert "8 completed (8 cached)" in again.stdout
    assert {r["experiment_id"]: r for r in read_results(out)} == records
    assert {p: p.stat().st_mtime_ns for p in out.glob("logs/**/*.pt")} == mtimes


@pytest.mark.slow
def test_a_failed_group_s_members_train_one_by_one(tmp_path, prefect_server):
    """A fused group that fails (here a data error injected into the group's task, not retried)
    does not fail its members: each trains as its own experiment and completes."""
    import os

    from tests.conftest import TINY, read_results, run_cli

    out = tmp_path / "sweep"
    grid = [
        "flows/sweep.py",
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "--seeds",
        "1",
        "2",
        *TINY,
        "--num-epochs",
        "1",
        "--fuse",
        "on",
        "--n-workers",
        "1",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    proc = run_cli(grid, check=True, env={**os.environ, "DDRSA_INJECT_FAULT": "dataerror:x2:*"})
    assert "fused group turbofan/paper/bs128 x2 failed (" in proc.stdout, proc.stdout[-3000:]
    assert "injected data error in turbofan/paper/bs128 x2" in proc.stdout
    assert "its 2 members train one by one" in proc.stdout
    assert "2 completed (0 cached), 0 failed" in proc.stdout
    records = read_results(out)
    assert sorted(r["seed"] for r in records) == [1, 2] and {r["status"] for r in records} == {"completed"}
    assert all(r["attempts"] == 1 and len(_epochs(out / r["run_dir"])) == 1 for r in records)
