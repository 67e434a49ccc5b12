"""The one Trainer, its batch samplers and callbacks, checkpoints, and recipes over it."""

from .callbacks import LatentSnapshots, TemperatureSchedule
from .checkpoint import load_weights, save_weights
from .recipes import fit_code_prior, fit_mean_field, fit_semi_supervised
from .samplers import BatchSampler, LabelledMix, Shuffled
from .trainer import Trainer

__all__ = [
    "BatchSampler",
    "LabelledMix",
    "LatentSnapshots",
    "Shuffled",
    "TemperatureSchedule",
    "Trainer",
    "fit_code_prior",
    "fit_mean_field",
    "fit_semi_supervised",
    "load_weights",
    "save_weights",
]
