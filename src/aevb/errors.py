"""Errors raised for a user's mistakes: each message names the problem and the fix."""


class AevbError(Exception):
    """Base class of the errors aevb raises on purpose."""


class DataError(AevbError, ValueError):
    """The data cannot be used as given (missing file, NaN, wrong shape, outside the support)."""


class ConfigError(AevbError, ValueError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(AevbError):
    """A run folder or checkpoint is missing, corrupt or does not match its config."""


class TrainingDiverged(AevbError, FloatingPointError):
    """A term of the objective became NaN or infinite during training."""


def require_positive(where: str, **values: float) -> None:
    """Raise :class:`ConfigError` naming every value of ``values`` that is not > 0 (or NaN)."""
    bad = [f"{name} = {value}" for name, value in values.items() if not value > 0]
    if bad:
        raise ConfigError(f"{where}: {', '.join(bad)} must be positive")
