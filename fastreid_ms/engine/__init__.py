from .defaults import default_argument_parser, default_setup, setup_cfg
from .train_step import NonFiniteLossError, TrainStep, resolve_amp_level
from .trainer import DefaultTrainer, reid_score

__all__ = ["default_argument_parser", "default_setup", "setup_cfg", "DefaultTrainer",
           "TrainStep", "NonFiniteLossError", "resolve_amp_level", "reid_score"]
