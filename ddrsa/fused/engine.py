"""`train_group(configs, run_dirs) -> [TrainResult]`: M experiments of one RNN or transformer
architecture trained as one stacked model, each member exactly its separate run (ddrsa.trainer.train).

Per member, as in the separate trainer: initialisation, batch order and dropout masks from its own
generators (`experiment_generators(seed)`), its own learning rate, lambda, NASA weight, dropout
rate, Adam state (bias corrections from its own step count), learning-rate schedule (the RNNs'
ReduceLROnPlateau per epoch, the transformers' warm-up + cosine per step), gradient
clipping (over its own parameters), early stopping, checkpoints (the separate trainer's format:
either trainer resumes the other's), training_log.json, test_metrics.json and TrainResult.

Per epoch: the active members (not stopped, not finished, resumed to this epoch) are stacked
(parameters and Adam moments get a leading member dimension), the epoch's training steps run fused
(ddrsa/fused/stacked.py), then the stack is written back into each member's own nn.Module and
torch.optim.Adam, and validation, scheduler, early stopping and checkpoints run per member in
its RunState (ddrsa/run_state.py), the separate trainer's own. A stopped member leaves the stack
(it costs nothing further). The loss is ddrsa/losses.py's DDRSALoss with one lambda and NASA
weight per member (its leading member axis).

Time and memory per member: `seconds` of an epoch = the fused training time / active members +
the member's own validation time; peak_gpu_mb = the group's peak / members (an even share).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch

from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.device import Split, autocast, resolve_device
from ddrsa.errors import DDRSAError
from ddrsa.losses import DDRSALoss, check_labels
from ddrsa.models import rnn_spec, transformer_spec
from ddrsa.run_state import RunState, TrainResult, locked_run_dirs, write_config
from ddrsa.schedule import steps_per_batch
from ddrsa.settings import Settings, get_settings
from ddrsa.trainer import new_run_state

from .stacked import RECURRENCES, StackedDropout, default_recurrence, stacked_forward

# What members of one group may differ in; every other config field is shared (the group key).
MEMBER_FIELDS = ("learning_rate", "lambda_param", "nasa_weight", "dropout", "seed")
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults, as the separate trainer uses


def fused_spec(model: str) -> dict | None:
    """What the stacked forward (ddrsa/fused/stacked.py) needs of `model`: kind "rnn" (paper,
    lstm/gru basic/deep) or "transformer" (transformer_basic/deep; GRU decoder), None for the
    models that cannot fuse (probsparse_*: its random key sampling)."""
    spec = rnn_spec(model)
    if spec is not None:
        return {"kind": "rnn", **spec}
    spec = transformer_spec(model)
    if spec is not None:  # `hidden`: the encoder's width, as for the RNNs
        return {"kind": "transformer", "cell": "gru", "hidden": spec["d_model"], **spec}
    return None


def fusable(config: ExperimentConfig) -> bool:
    """RNN and transformer models without torch.compile; ProbSparse (and compile) train separately."""
    return fused_spec(config.model) is not None and not config.compile


def group_key(config: ExperimentConfig) -> str:
    """Experiments with equal keys can train as one fused group."""
    import json

    fields = {k: v for k, v in config.model_dump(mode="json").items() if k not in MEMBER_FIELDS}
    return json.dumps(fields, sort_keys=True)


def check_group(configs: list[ExperimentConfig]) -> None:
    if not configs:
        raise DDRSAError("a fused group needs at least one experiment")
    keys = {group_key(c) for c in configs}
    if len(keys) != 1:
        raise DDRSAError("fused group members may differ only in " + ", ".join(MEMBER_FIELDS))
    if not fusable(configs[0]):
        raise DDRSAError(f"model {configs[0].model} (compile={configs[0].compile}) cannot be fused")


def train_group(
    configs: list[ExperimentConfig],
    run_dirs: list[str | Path],
    settings: Settings | None = None,
    inject_nan: set[int] | None = None,
    on_epoch=None,
    recurrence: str | None = None,
) -> list[TrainResult]:
    """Train `configs` (one fused group, see `group_key`) into `run_dirs`, resuming each member from
    its checkpoint_last.pt. Returns one TrainResult per member, in order. `on_epoch(i, entry)` is
    called after member i's epoch (progress display). `inject_nan` holds member indices whose
    first epoch is poisoned (fault drills). `recurrence` ("blockdiag" or "bmm", see
    ddrsa/fused/stacked.py) defaults to the device's faster one (`default_recurrence`)."""
    check_group(configs)
    if recurrence is not None and recurrence not in RECURRENCES:
        raise DDRSAError(f"recurrence must be one of {', '.join(RECURRENCES)} (got {recurrence!r})")
    if len(set(map(str, run_dirs))) != len(run_dirs) or len(run_dirs) != len(configs):
        raise DDRSAError("a fused group needs one distinct run folder per member")
    settings = settings or get_settings()
    data = load_dataset(configs[0].data_config(), settings)  # before any folder is created
    dirs = [Path(d) for d in run_dirs]
    with locked_run_dirs(configs, dirs):
        return _train_group_locked(configs, dirs, settings, data, inject_nan or set(), on_epoch, recurrence)


def new_member(
    config: ExperimentConfig, run_dir: Path, n_features: int, steps_per_epoch: int, device: torch.device
) -> RunState:
    """Member `config`'s run state in `run_dir` (config.json written), as the separate trainer builds it."""
    write_config(run_dir, config)
    return new_run_state(config, run_dir, n_features, steps_per_epoch, device)


class MemberStack:
    """The active members' parameters and Adam state with a leading member dimension.

    All parameters live in one flat leaf (A, P) (`flat`); `params[name]` are views of its column
    blocks shaped (A, *shape), so the backward pass leaves one (A, P) gradient and clipping and
    Adam are a handful of whole-buffer operations, whatever the number of parameter tensors.
    """

    def __init__(self, members: list[RunState], device: torch.device, recurrence: str | None = None) -> None:
        self.members = members
        self.recurrence = recurrence or default_recurrence(device)
        a = len(members)
        per = [dict(m.model.named_parameters()) for m in members]
        self.names = list(per[0])
        self.shapes = [per[0][n].shape for n in self.names]
        self.sizes = [per[0][n].numel() for n in self.names]

        def flat_of(get) -> torch.Tensor:
            return torch.cat([torch.stack([get(i, n) for i in range(a)]).reshape(a, -1) for n in self.names], 1)

        def state(i: int, n: str, key: str) -> torch.Tensor:
            s = members[i].optimizer.state.get(per[i][n], {})
            return s[key] if key in s else torch.zeros_like(per[i][n])

        self.flat = flat_of(lambda i, n: per[i][n].detach()).requires_grad_(True)
        self.exp_avg = flat_of(lambda i, n: state(i, n, "exp_avg")).detach()
        self.exp_avg_sq = flat_of(lambda i, n: state(i, n, "exp_avg_sq")).detach()
        self.steps = []
        for i, m in enumerate(members):
            first = m.optimizer.state.get(per[i][self.names[0]], {})
            self.steps.append(int(first["step"]) if "step" in first else 0)
        self.lrs = [m.optimizer.param_groups[0]["lr"] for m in members]
        self.weight_decay = members[0].optimizer.param_groups[0]["weight_decay"]
        self.max_norm = members[0].config.grad_clip
        cfgs = [m.config for m in members]
        # one lambda and NASA weight per member; lambda in float64 so 1 - lambda rounds as the float form's
        self.loss_fn = DDRSALoss(
            torch.tensor([c.lambda_param for c in cfgs], dtype=torch.float64, device=device),
            torch.tensor([c.nasa_weight for c in cfgs], dtype=torch.float32, device=device),
        )
        self.drop = StackedDropout([c.dropout for c in cfgs], [m.gens.dropout for m in members], device)

    @property
    def params(self) -> dict:
        """name -> (A, *shape) view of `flat` (fresh views each call: one per training step)."""
        a = len(self.members)
        blocks = self.flat.split(self.sizes, dim=1)
        return {n: b.view(a, *shape) for n, b, shape in zip(self.names, blocks, self.shapes)}

    @torch.no_grad()
    def clip_and_step(self) -> None:
        """clip_grad_norm_ over each member's own parameters (its norm over all of them), then
        torch.optim.Adam's update (single-tensor form, bias corrections in double precision) with
        each member's learning rate and step count."""
        p, g = self.flat, self.flat.grad
        assert g is not None  # after backward
        total = torch.linalg.vector_norm(g, 2, dim=1, keepdim=True)
        g.mul_(torch.clamp(self.max_norm / (total + 1e-6), max=1.0))
        self.steps = [s + 1 for s in self.steps]
        neg_step = torch.tensor(
            [[-lr / (1 - BETA1**s)] for lr, s in zip(self.lrs, self.steps)], dtype=torch.float32, device=g.device
        )
        bc2_sqrt = torch.tensor([[(1 - BETA2**s) ** 0.5] for s in self.steps], dtype=torch.float32, device=g.device)
        if self.weight_decay != 0:
            g = g.add(p, alpha=self.weight_decay)
        self.exp_avg.lerp_(g, 1 - BETA1)
        self.exp_avg_sq.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(EPS)
        p.add_(self.exp_avg * neg_step / denom)  # addcdiv_(m, denom, value=-step) computes (v*m)/denom

    def step_schedulers(self) -> None:
        """After a training step: each per-step scheduler steps (as the trainer's does after
        optimizer.step()) and the member's next learning rate is read back."""
        for i, member in enumerate(self.members):
            if steps_per_batch(member.scheduler):
                with warnings.catch_warnings():  # the stack, not optimizer.step(), moved the weights
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                    member.scheduler.step()
                self.lrs[i] = member.optimizer.param_groups[0]["lr"]

    @torch.no_grad()
    def write_back(self) -> None:
        a = len(self.members)
        views = [
            (n, b.view(a, *shape))
            for n, b, shape in zip(self.names, self.flat.detach().split(self.sizes, 1), self.shapes)
        ]
        m1 = [b.view(a, *shape) for b, shape in zip(self.exp_avg.split(self.sizes, 1), self.shapes)]
        m2 = [b.view(a, *shape) for b, shape in zip(self.exp_avg_sq.split(self.sizes, 1), self.shapes)]
        for i, member in enumerate(self.members):
            named = dict(member.model.named_parameters())
            for (n, v), e1, e2 in zip(views, m1, m2):
                named[n].copy_(v[i])
                member.optimizer.state[named[n]] = {
                    "step": torch.tensor(float(self.steps[i]), dtype=torch.float32),
                    "exp_avg": e1[i].clone(),
                    "exp_avg_sq": e2[i].clone(),
                }


def _fused_epoch(stack: MemberStack, spec: dict, split: Split, epoch: int, device: torch.device) -> torch.Tensor:
    """One epoch of training steps for the stacked members; returns the summed losses (A,)."""
    members = stack.members
    config = members[0].config
    orders = torch.stack(
        [torch.randperm(len(split), generator=m.gens.reseed_shuffle(m.config.seed, epoch)) for m in members]
    ).to(device)
    total = torch.zeros(len(members), device=device)
    for start in range(0, len(split), config.batch_size):
        idx = orders[:, start : start + config.batch_size]
        total += fused_step(stack, spec, split, idx, device) * idx.shape[1]
    return total


def fused_step(stack: MemberStack, spec: dict, split: Split, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One training step of every stacked member on its own windows `idx` (A, B): forward, loss,
    backward, per-member clipping and Adam. Returns the members' mean batch losses (A,), detached."""
    config = stack.members[0].config
    x, mask = split.batch(idx)
    with autocast(device, config.amp):
        logits = stacked_forward(spec, stack.params, x, mask, stack.drop, config.pred_horizon, stack.recurrence)
    loss = stack.loss_fn(logits.float(), split.event_index[idx], split.censored[idx])
    stack.flat.grad = None
    loss.sum().backward()
    stack.clip_and_step()
    stack.step_schedulers()
    return loss.detach()


def _train_group_locked(
    configs, dirs, settings: Settings, data, inject_nan: set[int], on_epoch, recurrence: str | None
) -> list[TrainResult]:
    device = resolve_device(settings)
    if device.type == "cuda" and configs[0].amp and not torch.cuda.is_bf16_supported():
        raise DDRSAError("fused training needs bf16 autocast on CUDA (or --no-amp): this GPU has fp16 only")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if configs[0].deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = configs[0]
    for name, windows in (("training", data.train), ("validation", data.val)):
        check_labels(windows.event_index, windows.censored, first.pred_horizon, where=f"{first.dataset} {name} windows")
    train_split = Split.from_windows(data.train, device)
    val_split = Split.from_windows(data.val, device)
    if len(train_split) == 0 or len(val_split) == 0:
        raise DDRSAError("no training or validation windows: too few units for the split")
    steps_per_epoch = math.ceil(len(train_split) / first.batch_size)
    members = [new_member(c, d, train_split.n_features, steps_per_epoch, device) for c, d in zip(configs, dirs)]
    spec = fused_spec(first.model)
    assert spec is not None, f"{first.model} does not fuse"
    for epoch in range(min(m.epoch for m in members) + 1, first.num_epochs + 1):
        active = [m for m in members if m.wants(epoch)]
        if not active:
            if all(not m.wants(e) for m in members for e in range(epoch, first.num_epochs + 1)):
                break
            continue
        t0 = time.perf_counter()
        stack = MemberStack(active, device, recurrence)
        for m in active:
            m.model.train()
        totals = _fused_epoch(stack, spec, train_split, epoch, device)
        stack.write_back()
        share = (time.perf_counter() - t0) / len(active)
        totals = totals.cpu()
        for j, m in enumerate(active):
            i = members.index(m)
            total = float(totals[j]) * (math.nan if i in inject_nan and epoch == m.resumed_from + 1 else 1.0)
            m.end_epoch(epoch, total / len(train_split), val_split, device, share)
            if on_epoch is not None:
                on_epoch(i, m.history[-1])
    return [m.finish(data, val_split, device, gpu_share=len(members)) for m in members]
