"""`python -m ddrsa.train` flags derive from ExperimentConfig: every field a flag, its description as help."""

from __future__ import annotations

from pydantic import Field

from ddrsa.cli import field_flag
from ddrsa.config import ExperimentConfig
from ddrsa.train import build_parser, config_from_args


def _options(parser) -> dict:
    return {opt: action for action in parser._actions for opt in action.option_strings}


def test_every_config_field_is_a_flag_with_its_description():
    options = _options(build_parser())
    for name, info in ExperimentConfig.model_fields.items():
        flag = field_flag(name, info)
        assert flag in options, flag
        assert info.description and options[flag].help == info.description.replace("%", "%%"), name
    for flag in ("--test-split", "--val-fraction", "--test-fraction", "--weight-decay", "--grad-clip", "--no-amp"):
        assert flag in options


def test_defaults_are_the_config_defaults_and_flags_reach_the_config():
    args = build_parser().parse_args(["--output-dir", "x"])
    assert config_from_args(args) == ExperimentConfig()
    args = build_parser().parse_args(
        [
            "--output-dir",
            "x",
            "--weight-decay",
            "0.01",
            "--grad-clip",
            "2",
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.25",
            "--test-split",
            "official",
            "--no-amp",
            "--compile",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.weight_decay, cfg.grad_clip, cfg.val_fraction, cfg.test_fraction) == (0.01, 2.0, 0.2, 0.25)
    assert cfg.test_split == "official" and cfg.amp is False and cfg.compile is True


def test_a_new_config_field_becomes_a_flag():
    class Extended(ExperimentConfig):
        warmup_epochs: int = Field(3, ge=0, description="epochs of linear learning-rate warm-up")

    parser = build_parser(Extended)
    action = _options(parser)["--warmup-epochs"]
    assert action.help == "epochs of linear learning-rate warm-up" and action.default == 3
    cfg = config_from_args(parser.parse_args(["--output-dir", "x", "--warmup-epochs", "5"]), Extended)
    assert isinstance(cfg, Extended) and cfg.warmup_epochs == 5
    assert "--warmup-epochs" not in _options(build_parser())
