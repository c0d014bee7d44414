"""Interactive launcher of DDRSA sweeps (successor of quick_experiments.sh).

    python -m deployments.launcher                                  # menu
    python -m deployments.launcher --preset batch-study --yes       # scripts: run locally now
    python -m deployments.launcher --preset nightly --where server --yes --set num_epochs=5
    python -m deployments.launcher --dry-run                        # choose, show the grid, train nothing

Lists the presets (deployments/presets.py) with experiment counts and time estimates measured
under the output root, or takes a custom grid; then runs the sweep here (`python flows/sweep.py`)
or as a run of the deployment `ddrsa-sweep/<preset>` on the Prefect server (PREFECT_API_URL).
A bad answer gets a message and the question again; end of input stops without starting anything.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import ValidationError  # noqa: E402

from ddrsa.cli import OneLineParser, run_cli  # noqa: E402
from ddrsa.config import format_validation_error  # noqa: E402
from ddrsa.errors import DDRSAError  # noqa: E402
from ddrsa.sweep.spec import GRID_AXES, SweepSpec  # noqa: E402
from deployments.estimates import estimate_spec, measured_epoch_seconds  # noqa: E402
from deployments.presets import (
    DEFAULT_OUTPUT_ROOT,
    PRESETS,
    preset_output_dir,
    preset_parameters,  # noqa: E402
    preset_spec,
)
from flows.options import FLOW_FIELDS, SPEC_FIELDS, item_type  # noqa: E402
from flows.sweep_cli import cli_args  # noqa: E402

PROG = "python -m deployments.launcher"
FLOW_NAME = "ddrsa-sweep"
# The sweep's parameters come from one definition (ddrsa/sweep/spec.py SweepSpec: what to train;
# flows/options.py SweepOptions: where and how); the launcher asks for the grid axes and lets
# `--set` change any of them except `preset` (the menu chooses it).
CUSTOM_AXES = [  # (flow parameter, prompt, element type)
    (axis, SweepSpec.model_fields[axis].description, item_type(axis)) for axis in GRID_AXES
]
SETTABLE = (set(SPEC_FIELDS) | set(FLOW_FIELDS)) - {"preset"}
LOCAL_ONLY_SKIPPED = {"append_to_history"}  # a deployment's nightly history; a local run keeps none


class InputEnded(DDRSAError):
    pass


class Console:
    """input()/print() with a second chance on bad answers."""

    def __init__(self, out=sys.stdout):
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(self, prompt: str, parse, default: str | None = None):
        """Ask until `parse(answer)` returns without ValueError; Enter takes `default`."""
        shown = f"{prompt} [{default}]: " if default is not None else f"{prompt}: "
        while True:
            self.out.write(shown)
            self.out.flush()
            line = sys.stdin.readline()
            if not line:
                self.say()
                raise InputEnded("input ended before a choice was made; nothing was started")
            answer = line.strip()
            if not answer and default is not None:
                answer = default
            try:
                return parse(answer)
            except ValueError as exc:
                self.say(f"  ! {exc}. Please try again.")


# --------------------------------------------------------------------------- choices


def preset_menu(console: Console, output_root: str) -> list[str]:
    names = list(PRESETS)
    measurements = measured_epoch_seconds(output_root)
    console.say(f"DDRSA sweep presets (time estimates from runs measured under {output_root}/):")
    for i, name in enumerate(names, 1):
        spec = preset_spec(name)
        est = estimate_spec(spec, output_root, measurements)
        console.say(f"  {i}) {name:20s} {spec.size():5d} experiments  {spec.num_epochs:3d} epochs  {est.text()}")
        console.say(f"     {PRESETS[name]['description']}")
    console.say("  c) custom grid")
    console.say("  q) quit")
    return names


def parse_menu_choice(answer: str, names: list[str]) -> str:
    a = answer.strip().lower()
    if a in ("q", "quit", "exit"):
        return "quit"
    if a in ("c", "custom"):
        return "custom"
    if a.isdigit() and 1 <= int(a) <= len(names):
        return names[int(a) - 1]
    if a in names:
        return a
    raise ValueError(f"{answer!r} is not a choice: type 1-{len(names)}, a preset name, c (custom) or q (quit)")


def _values(answer: str, kind) -> list:
    parts = answer.replace(",", " ").split()
    if not parts:
        raise ValueError("give at least one value")
    out = []
    for part in parts:
        try:
            out.append(kind(part))
        except ValueError:
            raise ValueError(f"{part!r} is not {'an integer' if kind is int else 'a number'}") from None
    return out


def _checked(field: str, value, base: dict):
    """Validate one field against SweepSpec now, so the user re-types only that answer."""
    from ddrsa.sweep.spec import SweepSpec, expand

    try:
        expand(SweepSpec(**{**base, field: value}))
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None
    except DDRSAError as exc:
        raise ValueError(str(exc)) from None
    return value


def custom_grid(console: Console) -> dict:
    """Ask for each axis (Enter keeps the default preset's values); returns flow parameters."""
    base = preset_spec("default").model_dump(mode="json")
    console.say("Custom grid: values separated by spaces or commas; Enter keeps the value in brackets.")
    params: dict = {}
    for axis, prompt, kind in CUSTOM_AXES:
        default = " ".join(str(v) for v in base[axis])
        params[axis] = console.ask(
            f"  {prompt}", lambda a, axis=axis, kind=kind: _checked(axis, _values(a, kind), base), default
        )
    params["num_epochs"] = console.ask("  epochs", lambda a: _checked("num_epochs", _one_int(a), base), "30")
    params["window_stride"] = console.ask(
        "  window stride (1 = every window, 4 = a quick look)",
        lambda a: _checked("window_stride", _one_int(a), base),
        "1",
    )
    params["output_dir"] = console.ask("  output folder", _non_empty, f"{DEFAULT_OUTPUT_ROOT}/custom")
    return params


def _one_int(answer: str) -> int:
    try:
        return int(answer)
    except ValueError:
        raise ValueError(f"{answer!r} is not an integer") from None


def _non_empty(answer: str) -> str:
    if not answer:
        raise ValueError("give a folder")
    return answer


def parse_where(answer: str) -> str:
    a = answer.strip().lower()
    if a in ("1", "l", "local", "here"):
        return "local"
    if a in ("2", "s", "server", "deployment"):
        return "server"
    raise ValueError(f"{answer!r} is not a choice: type 1 (here, now) or 2 (deployment run on the server)")


def parse_yes(answer: str) -> bool:
    a = answer.strip().lower()
    if a in ("y", "yes"):
        return True
    if a in ("n", "no"):
        return False
    raise ValueError(f"{answer!r}: answer y or n")


# --------------------------------------------------------------------------- commands


def flow_parameters(preset: str, overrides: dict) -> dict:
    """Deployment parameters of the preset with the overrides on top."""
    return {**preset_parameters(preset), **overrides}


def local_command(params: dict) -> list[str]:
    """`python flows/sweep.py ...` equivalent to the flow parameters (flags from flows/sweep_cli.py)."""
    return [
        sys.executable,
        "flows/sweep.py",
        *cli_args({k: v for k, v in params.items() if k not in LOCAL_ONLY_SKIPPED}),
    ]


def server_command(deployment: str, params: dict) -> list[str]:
    return ["prefect", "deployment", "run", f"{FLOW_NAME}/{deployment}", "--params", json.dumps(params)]


def run_local(params: dict, dry_run: bool, console: Console) -> int:
    cmd = local_command(params) + (["--dry-run"] if dry_run else [])
    console.say("running: " + shlex.join(["python", *cmd[1:]]))
    return subprocess.call(cmd, cwd=ROOT)


def run_on_server(deployment: str, params: dict, dry_run: bool, console: Console) -> int:
    console.say("equivalent: " + shlex.join(server_command(deployment, params)))
    if dry_run:
        console.say("(dry run: nothing submitted)")
        return 0
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise DDRSAError(
            "PREFECT_API_URL is not set: start the server and export it (docs/DEPLOYMENTS.md), or choose to run here"
        )
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run = run_deployment(f"{FLOW_NAME}/{deployment}", parameters=params, timeout=0)
    except ObjectNotFound:
        raise DDRSAError(
            f"deployment {FLOW_NAME}/{deployment} is not registered on {url}: run "
            "`prefect --no-prompt deploy --all` (then a worker) or `python -m deployments.serve`"
        ) from None
    except Exception as exc:  # connection refused, bad parameters
        raise DDRSAError(f"could not start {FLOW_NAME}/{deployment} on {url}: {type(exc).__name__}: {exc}") from None
    ui = url.removesuffix("/api")
    console.say(f"submitted flow run {flow_run.name} ({flow_run.id}); follow it at {ui}/runs/flow-run/{flow_run.id}")
    return 0


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in SETTABLE:
            raise DDRSAError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(SETTABLE))}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description="Pick a preset or a custom grid and start a DDRSA sweep.")
    parser.add_argument("--preset", choices=list(PRESETS), help="skip the menu")
    parser.add_argument(
        "--where",
        choices=["local", "server"],
        help="local: run here now; server: a run of deployment ddrsa-sweep/<preset>",
    )
    parser.add_argument(
        "--yes", "-y", action="store_true", help="no questions (with --preset: defaults to --where local)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a flow parameter, e.g. --set num_epochs=5 --set 'datasets=[\"turbofan\"]'",
    )
    parser.add_argument(
        "--output-root", default=DEFAULT_OUTPUT_ROOT, help="where earlier sweeps are looked up for time estimates"
    )
    parser.add_argument("--dry-run", action="store_true", help="show the grid / command; train nothing")
    args = parser.parse_args(argv)
    overrides = parse_set(args.set)
    if args.yes and not args.preset:
        raise DDRSAError("--yes needs --preset NAME (the menu needs answers)")
    console = Console()

    preset = args.preset
    custom: dict = {}
    if preset is None:
        names = preset_menu(console, args.output_root)
        choice = console.ask(f"Choose [1-{len(names)}, name, c, q]", lambda a: parse_menu_choice(a, names))
        if choice == "quit":
            console.say("nothing started")
            return 0
        if choice == "custom":
            preset, custom = "default", custom_grid(console)
        else:
            preset = choice
    params = flow_parameters(preset, {**custom, **overrides})
    try:
        spec = preset_spec(preset, {k: v for k, v in params.items() if k in SPEC_FIELDS})
        est = estimate_spec(spec, args.output_root)  # expands: every config validated here
    except ValidationError as exc:
        raise DDRSAError(format_validation_error(exc)) from None
    label = "custom grid" if custom else f"preset {preset}"
    console.say(
        f"{label}: {spec.size()} experiments, {spec.num_epochs} epochs each; {est.text()}; "
        f"results in {params.get('output_dir', preset_output_dir(preset))}"
    )

    where = args.where or ("local" if args.yes else None)
    if where is None:
        console.say(
            "Where to run?  1) here, now (python flows/sweep.py)   2) as a deployment run on the Prefect server"
        )
        where = console.ask("Run where [1, 2]", parse_where, "1")
    if not args.yes and not console.ask(f"Start {spec.size()} experiments ({where})? [y/n]", parse_yes, "y"):
        console.say("nothing started")
        return 0
    if where == "local":
        return run_local(params, args.dry_run, console)
    return run_on_server(preset, params, args.dry_run, console)


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
