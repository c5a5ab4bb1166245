"""Training a method on a dataset folder: config, data, the loop, run folders and resume, evaluation.

Floors inside: ``config`` < ``data`` < ``checkpoint`` < ``runs`` < ``evaluation`` < ``loop``. The
names a notebook needs are importable from here::

    from workbench.train import TrainConfig, train, load_run
"""

from workbench.train.config import ConfigError, TrainConfig, TrainingError
from workbench.train.data import make_datasets, make_loader
from workbench.train.evaluation import evaluate, evaluate_run
from workbench.train.loop import train
from workbench.train.runs import load_run

__all__ = [
    "ConfigError",
    "TrainConfig",
    "TrainingError",
    "evaluate",
    "evaluate_run",
    "load_run",
    "make_datasets",
    "make_loader",
    "train",
]
