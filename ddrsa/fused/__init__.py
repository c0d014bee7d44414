"""Horizontally fused training: many experiments of one architecture as one stacked model.

`train_group(configs, run_dirs)` trains a group (see `group_key`: members differ only in learning
rate, lambda, NASA weight, dropout rate and seed) and returns one TrainResult per member, each the
same as its separate `ddrsa.trainer.train` run (tests/test_fused.py). `fusable(config)`: RNN models
(paper, lstm_basic, gru_basic, lstm_deep, gru_deep) and transformer_basic/deep without torch.compile.
"""

from .engine import MEMBER_FIELDS, check_group, fusable, group_key, train_group

__all__ = ["MEMBER_FIELDS", "check_group", "fusable", "group_key", "train_group"]
