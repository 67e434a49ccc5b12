"""Run configuration: options read, validated and saved; the registries of names.

The library takes keyword arguments; the command line reads a TOML file and flags into a
validated :class:`RunConfig` (unknown keys and wrong types are errors) and saves it as
``config.json`` beside every checkpoint. The registries here (``LIKELIHOODS``, ``PRIORS``,
...) map names to parts; :mod:`aevb.cli.build` turns a config into the model, objective and
trainer.

A config file has three sections and a seed, e.g.::

    seed = 0
    [data]
    source = "digits"
    [model]
    likelihood = "continuous-bernoulli"
    latent_dim = 2
    hidden_dims = [200, 200]
    [train]
    epochs = 200

Longer than 400 lines because every option of ``aevb train``, its choices and its checks
are declared here once: the parser, the TOML reader and the help read them from here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how they are split (fractions of all rows)."""

    source: str = "digits"
    binarize: float | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    scale: float | None = None  # divide values by this (255: 8-bit pixels to [0, 1])
    labels: str | None = None  # m2/cvae: a column or a file; None: the dataset's own
    num_labelled: int | None = None  # keep this many training labels (balanced), hide the rest
    stream: bool = False  # read .npy/.csv/Parquet rows from disk a batch at a time
    valid_source: str | None = None  # text: validation lines from their own file ...
    test_source: str | None = None  # ... and test lines (a fixed split)
    max_length: int = 50  # text: words kept per line (longer lines are cut, and counted)
    vocab_size: int = 10_000  # text: most frequent tokens of the training lines (+ specials)
    lowercase: bool = False  # text: fold case before building the vocabulary
    sequences: bool = False  # rows are real-valued sequences (aevb.data.series): .npy/.npz/CSV
    sequence_column: str = "sequence"  # sequences from long-format CSV: names each sequence
    time_column: str = "time"  # ... and orders its steps


@dataclass(frozen=True)
class ModelConfig:
    """An encoder and a decoder body (MLP or convolutional) with heads, one or several latent
    layers; ``likelihood`` names the decoder's head.

    ``kind`` is ``vae``, ``m2`` (semi-supervised, labels partly observed) or ``cvae``
    (conditional VAE, every label observed); see :mod:`aevb.models.semisupervised`.
    """

    kind: str = "vae"
    m1: str | None = None  # m2/cvae: a VAE run folder; its posterior means are the data (M1+M2)
    likelihood: str = "continuous-bernoulli"
    latent_dim: int = 2
    hidden_dims: tuple[int, ...] = (200, 200)
    activation: str = "relu"
    body: str = "mlp"  # mlp, conv (strided convolutions), resnet (conv + residual blocks), rnn
    cell: str = "lstm"  # rnn: lstm or gru; hidden_dims: one layer per entry (equal widths)
    embed_dim: int = 256  # rnn: word embeddings
    bidirectional: bool = True  # rnn: the encoder reads each line both ways
    word_dropout: float = 0.0  # rnn: input words replaced by <unk> while training (Bowman)
    dropout: float = 0.0  # rnn: decoder embeddings and outputs, between layers
    channels: tuple[int, ...] = (32, 64)  # conv/resnet: channels of each stride-2 stage
    norm: str = "none"  # conv/resnet: normalization after each convolution
    spatial_latents: bool = False  # conv/resnet: z_1 is latent_dim channels on the last map
    latent_layers: tuple[int, ...] | None = None  # sizes of z_2 .. z_L above z_1 (latent_dim)
    layer_hidden_dims: tuple[int, ...] = (100, 100)  # MLPs between stochastic layers
    hierarchy: str = "bottom-up"  # inference through the layers: bottom-up or ladder
    prior: str = "standard-normal"
    prior_components: int | None = None  # mixture: 10, vamp: 500 pseudo-inputs
    pseudo_inputs: str = "noise"  # vamp: noise (the paper's N(0.05, 0.01^2)) or data (examples)
    posterior: str = "diagonal"  # q(z|x): diagonal, full, planar; categorical, bernoulli; vq
    latent_categories: int = 10  # categorical latents: values of each of latent_dim variables
    straight_through: bool = False  # discrete latents: exact codes, relaxed gradients
    codebook_size: int = 512  # vq: codes in the codebook (K)
    code_dim: int = 8  # vq: values of each code; z is latent_dim codes (at each position)
    codebook_ema: bool = True  # vq: codes follow the encoder by moving averages, not gradients
    likelihood_scale: float = 0.1
    num_categories: int = 256
    likelihood_components: int = 5  # discretized-logistic: logistics per value


@dataclass(frozen=True)
class TrainConfig:
    """Options of :class:`aevb.Trainer` and of the objective (:func:`aevb.elbo`, or
    :func:`aevb.iwae_bound` with ``k`` samples and ``iwae_gradient``)."""

    objective: str = "elbo"
    k: int = 5
    iwae_gradient: str = "standard"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 1e-3
    lr_decay: float = 1.0
    optimizer: str = "adam"
    patience: int | None = 20
    beta: float = 1.0
    kl_warmup_epochs: int = 30
    kl_schedule: str = "linear"  # or sigmoid, cyclical (kl_cycles cycles of kl_warmup_epochs)
    kl_cycles: int = 4
    aggressive_steps: int = 0  # encoder steps per decoder step, aggressive phase (He et al.)
    free_bits: float = 0.0
    num_samples: int = 1
    analytic_kl: bool = True
    stl: bool = False
    clip_grad_norm: float | None = None
    snapshot_every: int = 50
    tensorboard: bool = False  # event files in RUN/tensorboard
    precision: str = "float32"  # bfloat16: matrix products in bfloat16, densities float32
    compile: bool = False  # torch.compile the objective (10-20 s once)
    device: str = "cpu"  # cpu, cuda or cuda:N
    max_minutes: float | None = None  # wall-time budget: no epoch starts that would end past it
    init_from: str | None = None  # a run folder whose model.safetensors starts training
    inference: str = "amortized"  # or mean-field: per-example q, the encoder unused
    local_lr: float = 0.01  # mean-field: Adam step size of the per-example parameters
    local_steps: int = 2000  # mean-field: Adam steps fitting q of each held-out example
    refine_steps: int = 0  # semi-amortized training: gradient steps on q from the encoder
    refine_lr: float = 0.1
    refine_differentiable: bool = False  # train the encoder through the steps (SA-VAE)
    alpha: float = 1.0  # m2: weight of log q(y|x) on labelled data (paper: 0.1)
    labelled_per_batch: int = 10  # m2: labelled rows added to every minibatch
    temperature: float = 1.0  # discrete latents: the relaxation's temperature at step 0 ...
    temperature_min: float = 0.5  # ... annealed to this minimum
    temperature_rate: float = 1e-4  # ... as exp(-rate * step) (Jang et al. 2017)
    commitment: float = 0.25  # vq: weight of |z_e - sg(z_q)|^2 (van den Oord et al. 2017)
    prior_epochs: int = 30  # vq, autoregressive prior: epochs refitting it to the codes

    @property
    def max_seconds(self) -> float | None:
        """``max_minutes`` in seconds, as the fitting loops take it."""
        return None if self.max_minutes is None else 60 * self.max_minutes


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


DATASETS = ("digits", "digits-binary", "binarized-mnist")  # named datasets (aevb.data)
# The names each choice accepts; cli/build.py maps every name to its part (a test checks that
# the two agree). Names only here, so that `aevb --help` needs no torch.
LIKELIHOODS = (
    "bernoulli",
    "continuous-bernoulli",
    "normal",
    "normal-fixed",
    "laplace",
    "student-t",
    "negative-binomial",
    "categorical",
    "discretized-logistic",
)
BODIES = ("mlp", "conv", "resnet", "rnn")
CELLS = ("lstm", "gru")
KL_SCHEDULES = ("linear", "sigmoid", "cyclical")
NORMS = ("none", "batch", "group", "layer")
HIERARCHIES = ("bottom-up", "ladder")
PRIORS = (
    "standard-normal",
    "learned-normal",
    "mixture",
    "vamp",
    "uniform",
    "learned-discrete",
    "autoregressive",
)
DISCRETE_PRIORS = ("uniform", "learned-discrete")
CODE_PRIORS = ("uniform", "autoregressive")  # over the codes of a VQ-VAE
OBJECTIVES = ("elbo", "iwae")
POSTERIORS = ("diagonal", "full", "planar", "categorical", "bernoulli", "vq")
DISCRETE_POSTERIORS = ("categorical", "bernoulli")
INFERENCE = ("amortized", "mean-field")
KINDS = ("vae", "m2", "cvae")
OPTIMIZERS = ("adam", "adamw", "adamax", "rmsprop", "sgd")
ACTIVATIONS = ("relu", "tanh", "softplus", "elu", "gelu", "silu", "leaky_relu")
IWAE_GRADIENTS = ("standard", "stl", "dreg")
CHOICES: dict[str, tuple[str, ...]] = {
    "objective": OBJECTIVES,
    "iwae_gradient": IWAE_GRADIENTS,
    "likelihood": LIKELIHOODS,
    "prior": PRIORS,
    "optimizer": OPTIMIZERS,
    "activation": ACTIVATIONS,
    "posterior": POSTERIORS,
    "inference": INFERENCE,
    "kind": KINDS,
    "pseudo_inputs": ("noise", "data"),
    "body": BODIES,
    "cell": CELLS,
    "kl_schedule": KL_SCHEDULES,
    "norm": NORMS,
    "hierarchy": HIERARCHIES,
    "precision": ("float32", "bfloat16"),
}
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


# -- reading and validating -----------------------------------------------------------------


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML (or a saved ``config.json``) file into a validated :class:`RunConfig`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no config file at {path}")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            import json

            raw = json.loads(text)
        else:
            raw = tomllib.loads(text)
    except ValueError as error:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from error
    return config_from_dict(raw, where=str(path))


def config_from_dict(raw: dict[str, Any], *, where: str = "config") -> RunConfig:
    """Validate nested ``{"data": {...}, "model": {...}, "train": {...}, "seed": 0}``."""
    _reject_unknown(raw, [*SECTIONS, "seed"], where)
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{name}] must be a table of options")
        sections[name] = _build(cls, values, f"{where} [{name}]")
    seed = _coerce(raw.get("seed", 0), int, f"{where}: seed")
    config = RunConfig(**sections, seed=seed)
    _check_combinations(config, where)
    return config


def _check_combinations(config: RunConfig, where: str) -> None:
    """Options of different sections that contradict each other, refused with the reason."""
    model, train = config.model, config.train
    layers = bool(model.latent_layers)
    discrete = model.posterior in DISCRETE_POSTERIORS
    vq = model.posterior == "vq"
    text = str(config.data.source).lower().endswith((".txt", ".txt.gz"))
    sequences = config.data.sequences
    rnn = model.body == "rnn"
    rules = [
        (
            (text or sequences) != rnn,
            f"source = {config.data.source!r} with body = {model.body!r}: text files (.txt, "
            ".txt.gz, one sentence per line) and real-valued sequences (sequences = true) are "
            "read by recurrent networks, and they read only those: use body = 'rnn' with a "
            "text file or sequences, another body with other data",
        ),
        (
            sequences and (text or model.likelihood not in ("normal", "student-t")),
            "real-valued sequences (sequences = true; not a text file) take likelihood = "
            f"'normal' or 'student-t' for each step, got {model.likelihood!r}",
        ),
        (
            rnn
            and (
                model.kind != "vae"
                or model.posterior != "diagonal"
                or model.prior not in ("standard-normal", "learned-normal", "mixture")
                or bool(model.latent_layers)
                or config.data.stream
                or train.inference != "amortized"
            ),
            "a sequence VAE (body = 'rnn') has one diagonal Gaussian latent layer with a "
            "standard-normal, learned-normal or mixture prior, amortized inference, kind = "
            "'vae', and its lines in memory (no stream)",
        ),
        (
            not text and (config.data.valid_source or config.data.test_source) is not None,
            "valid_source and test_source give held-out lines of a text file; other data are "
            "split by valid_fraction and test_fraction",
        ),
        (
            (config.data.valid_source is None) != (config.data.test_source is None),
            "give both valid_source and test_source (a fixed split), or neither",
        ),
        (
            train.temperature_min > train.temperature,
            f"temperature_min ({train.temperature_min}) must not exceed the starting "
            f"temperature ({train.temperature}): the schedule anneals downwards",
        ),
        (
            (model.prior not in CODE_PRIORS) if vq else model.prior == "autoregressive",
            f"posterior = {model.posterior!r} and prior = {model.prior!r} do not go together: a "
            "VQ-VAE (posterior = 'vq') takes prior = 'uniform' or 'autoregressive' over its "
            "codes, and only it takes 'autoregressive'",
        ),
        (
            vq
            and (
                model.kind != "vae"
                or bool(model.latent_layers)
                or train.objective != "elbo"
                or train.inference != "amortized"
                or train.refine_steps > 0
                or train.free_bits > 0
                or train.stl
            ),
            "a VQ-VAE (posterior = 'vq') trains a plain VAE by its own objective (the bound "
            "log p(x|z_q) + log p(z_q) with codebook and commitment terms): kind = 'vae', "
            "objective = 'elbo', amortized inference, one latent layer, no free_bits, stl or "
            "refine_steps",
        ),
        (
            not vq and discrete != (model.prior in DISCRETE_PRIORS),
            f"posterior = {model.posterior!r} needs a prior of its own family: discrete latents "
            "(categorical, bernoulli) take prior = 'uniform' or 'learned-discrete', Gaussian "
            "ones the others",
        ),
        (
            discrete
            and (
                model.kind != "vae"
                or bool(model.latent_layers)
                or model.spatial_latents
                or train.objective != "elbo"
                or not train.analytic_kl
                or train.inference != "amortized"
            ),
            "discrete latents train a plain VAE by the ELBO with its exact KL: kind = 'vae', "
            "objective = 'elbo', analytic_kl = true, amortized inference, one flat latent layer",
        ),
        (
            config.data.stream and (model.kind != "vae" or train.inference != "amortized"),
            "stream = true reads the rows from disk a batch at a time for amortized VAEs; "
            f"a {model.kind} model with inference = {train.inference!r} keeps its data (labels, "
            "or a q per example) in memory: drop stream",
        ),
        (
            model.kind != "vae" and train.inference != "amortized",
            f"inference = {train.inference!r} fits a q per example of a plain VAE; a "
            f"{model.kind} model infers z and y with its encoder: use inference = 'amortized'",
        ),
        (
            model.kind == "vae" and config.data.num_labelled is not None,
            "num_labelled hides labels of a semi-supervised model; a plain VAE uses none: drop "
            "it, or set kind = 'm2'",
        ),
        (
            train.refine_steps > 0 and train.objective == "iwae",
            "refine_steps refines q for the ELBO; with objective = 'iwae' pick one of the two",
        ),
        (
            model.spatial_latents
            and (model.body == "mlp" or model.posterior not in ("diagonal", "vq")),
            "spatial_latents needs a convolutional body (body = 'conv' or 'resnet') and the "
            "diagonal or vq posterior",
        ),
        (
            model.spatial_latents and model.kind != "vae",
            "spatial_latents is for kind = 'vae' models",
        ),
        (
            layers and train.refine_steps > 0,
            "refine_steps (semi-amortized inference) refines a Gaussian q(z|x); a hierarchy "
            "(latent_layers) has a chain of layers: drop one of the two",
        ),
        (
            layers
            and (train.stl or (train.objective == "iwae" and train.iwae_gradient != "standard")),
            "the STL and DReG gradients rebuild q(z|x) with detached parameters, which a "
            "hierarchy (latent_layers) cannot: use iwae_gradient = 'standard' and stl = false "
            "with latent layers",
        ),
    ]
    for broken, reason in rules:
        if broken:
            raise ConfigError(f"{where}: {reason}")


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def describe_config(config: RunConfig) -> str:
    """The resolved config as TOML, in the form ``--config`` reads (``None``: left out)."""
    raw = config_to_dict(config)
    lines = [f"seed = {raw.pop('seed')}"]
    for section, values in raw.items():
        lines += ["", f"[{section}]"]
        # JSON's strings, numbers, booleans and arrays are valid TOML values
        lines += [f"{key} = {json.dumps(v)}" for key, v in values.items() if v is not None]
    return "\n".join(lines)


def override(config: RunConfig, updates: dict[str, Any]) -> RunConfig:
    """Replace options given as ``{"latent_dim": 8, "seed": 1, ...}`` (names are unique)."""
    raw = config_to_dict(config)
    for key, value in updates.items():
        if key == "seed":
            raw["seed"] = value
            continue
        sections = [s for s, cls in SECTIONS.items() if key in _fields(cls)]
        if not sections:
            _reject_unknown({key: value}, [f for cls in SECTIONS.values() for f in _fields(cls)])
        raw[sections[0]][key] = value
    return config_from_dict(raw, where="options")


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _reject_unknown(values: dict[str, Any], known: list[str], where: str = "config") -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"{where}: unknown option {key!r}{hint}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    _reject_unknown(values, _fields(cls), where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where} {k}") for k, v in values.items()}
    for key, choices in CHOICES.items():
        if key in kwargs and kwargs[key] not in choices:
            close = difflib.get_close_matches(str(kwargs[key]), choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: {key} = {kwargs[key]!r} is not one of {', '.join(choices)}{hint}"
            )
    config = cls(**kwargs)
    _check_ranges(config, where)
    return config


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint (int, float, bool, str, X | None, tuple[int, ...])."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None:
            return None
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where}: expected a non-empty list of integers, got {value!r}")
        return tuple(_coerce(v, int, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _check_ranges(config: Any, where: str) -> None:
    positive = (
        "latent_dim",
        "epochs",
        "batch_size",
        "lr",
        "num_samples",
        "likelihood_scale",
        "k",
        "prior_components",
        "max_minutes",
        "num_labelled",
        "labelled_per_batch",
        "likelihood_components",
        "scale",
        "patience",
        "lr_decay",
        "clip_grad_norm",
        "local_lr",
        "local_steps",
        "refine_lr",
        "temperature",
        "temperature_min",
        "codebook_size",
        "code_dim",
        "max_length",
        "embed_dim",
        "kl_cycles",
    )
    for key in positive:
        value = getattr(config, key, 1)
        if value is not None and not value > 0:
            raise ConfigError(f"{where}: {key} must be positive, got {getattr(config, key)}")
    nonnegative = (
        "beta",
        "free_bits",
        "kl_warmup_epochs",
        "valid_fraction",
        "test_fraction",
        "snapshot_every",
        "alpha",
        "temperature_rate",
        "commitment",
        "prior_epochs",
        "aggressive_steps",
        "word_dropout",
        "dropout",
    )
    for key in nonnegative:  # (written so that NaN fails too)
        if hasattr(config, key) and not getattr(config, key) >= 0:
            raise ConfigError(f"{where}: {key} must be >= 0, got {getattr(config, key)}")
    if isinstance(config, DataConfig) and not config.valid_fraction + config.test_fraction < 1:
        raise ConfigError(
            f"{where}: valid_fraction + test_fraction must be below 1 (some rows must train), "
            f"got {config.valid_fraction} + {config.test_fraction}"
        )
    for key, low, high in (("vocab_size", 5, None), ("word_dropout", 0, 1), ("dropout", 0, 1)):
        value = getattr(config, key, None)
        if value is not None and not (value >= low and (high is None or value < high)):
            bounds = f">= {low}" if high is None else f"in [{low}, {high})"
            raise ConfigError(f"{where}: {key} must be {bounds}, got {value}")
    for key in ("num_categories", "latent_categories"):
        if isinstance(config, ModelConfig) and getattr(config, key) < 2:
            raise ConfigError(f"{where}: {key} must be >= 2, got {getattr(config, key)}")
    if isinstance(config, ModelConfig):
        for key in ("hidden_dims", "channels", "latent_layers", "layer_hidden_dims"):
            widths = getattr(config, key) or ()
            if any(width < 1 for width in widths):
                raise ConfigError(f"{where}: {key} must be positive, got {widths}")
        if config.latent_layers and config.kind != "vae":
            raise ConfigError(f"{where}: latent_layers (a hierarchy) is for kind = 'vae' models")
        if config.latent_layers and config.prior not in ("standard-normal", "vamp"):
            raise ConfigError(
                f"{where}: a hierarchy's prior is its own top-down chain over a standard normal "
                "or VampPrior top layer: prior = 'standard-normal' or 'vamp' with latent_layers"
            )
        if config.latent_layers and config.prior == "vamp" and config.hierarchy != "ladder":
            raise ConfigError(
                f"{where}: a VampPrior on a hierarchy's top layer mixes the ladder's q(z_L|x): "
                "set hierarchy = 'ladder' with prior = 'vamp'"
            )
    from_data = isinstance(config, ModelConfig) and config.pseudo_inputs == "data"
    if from_data and config.prior != "vamp":
        raise ConfigError(f"{where}: pseudo_inputs is a vamp option; set prior = 'vamp'")
    if isinstance(config, TrainConfig) and config.stl and config.analytic_kl:
        raise ConfigError(f"{where}: stl = true needs analytic_kl = false (Monte Carlo KL)")
