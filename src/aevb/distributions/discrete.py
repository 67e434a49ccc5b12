"""Discrete latent variables with relaxed samples for training and exact probabilities for
everything else: categorical (Gumbel-softmax, Jang et al. 2017; Concrete, Maddison et al.
2017) and Bernoulli (binary Concrete) variables.

A datum of ``num_vars`` categorical variables with ``num_categories`` values each is their
one-hot codes concatenated, event shape ``(num_vars * num_categories,)``; of ``num_vars``
Bernoulli variables, their 0/1 values, event shape ``(num_vars,)``. Both families are
ordinary :class:`~torch.distributions.Distribution` objects for the rest of aevb:

- ``sample()`` draws exact discrete values (what IS log p(x) and the figures use);
- ``rsample()`` draws the relaxation at ``temperature`` (differentiable; what the ELBO's
  reparameterized gradient uses), or with ``hard=True`` the exact discrete draw in the forward
  pass with the relaxed draw's gradient (straight-through; the Gumbel-max trick makes the
  forward value an exact sample);
- ``log_prob(z)`` is the exact log-probability of discrete ``z`` (not the relaxed density);
- the KL between two of a family is registered in closed form (summed over variables).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

from ..errors import ConfigError

_Shape = torch.Size | list[int] | tuple[int, ...]


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:  # written so that NaN fails too
        raise ConfigError(f"the relaxation's temperature must be positive, got {temperature}")
    return float(temperature)


class Categoricals(Distribution):
    """``num_vars`` independent categorical variables as concatenated one-hot codes.

    Args:
        logits: ``(*batch, num_vars, num_categories)`` unnormalized log-probabilities.
        temperature: of the Gumbel-softmax relaxation in ``rsample`` (> 0; towards 0 the
            relaxed codes approach one-hot, with higher-variance gradients).
        hard: ``rsample`` returns exact one-hot codes with the relaxed gradient
            (straight-through Gumbel-softmax).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"logits": constraints.real}
    has_rsample = True

    def __init__(
        self,
        logits: torch.Tensor,
        temperature: float = 1.0,
        hard: bool = False,
        validate_args: bool | None = False,
    ) -> None:
        if logits.dim() < 2:
            raise ConfigError(
                f"logits must be (*batch, num_vars, num_categories), got {logits.shape}"
            )
        self.logits = logits - logits.logsumexp(-1, keepdim=True)  # normalized: log pi
        self.temperature, self.hard = _check_temperature(temperature), hard
        self.num_vars, self.num_categories = logits.shape[-2:]
        event = (self.num_vars * self.num_categories,)
        super().__init__(logits.shape[:-2], torch.Size(event), validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    @property
    def mean(self) -> torch.Tensor:
        return self.probs.flatten(-2)

    @property
    def variance(self) -> torch.Tensor:
        return (self.probs * (1 - self.probs)).flatten(-2)

    def expand(self, batch_shape: _Shape, _instance: object = None) -> Categoricals:
        shape = torch.Size(batch_shape) + self.logits.shape[-2:]
        return Categoricals(self.logits.expand(shape), self.temperature, self.hard)

    def _gumbel(self, shape: torch.Size) -> torch.Tensor:
        noise = torch.empty(shape, dtype=self.logits.dtype, device=self.logits.device)
        return -noise.exponential_().log()

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        with torch.no_grad():
            scores = self.logits + self._gumbel(torch.Size(sample_shape) + self.logits.shape)
            index = scores.argmax(-1)  # Gumbel-max: an exact draw
            return F.one_hot(index, self.num_categories).to(self.logits.dtype).flatten(-2)

    def rsample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        scores = self.logits + self._gumbel(torch.Size(sample_shape) + self.logits.shape)
        relaxed = torch.softmax(scores / self.temperature, -1)
        if not self.hard:
            return relaxed.flatten(-2)
        exact = F.one_hot(scores.argmax(-1), self.num_categories).to(relaxed.dtype)
        return (exact - relaxed.detach() + relaxed).flatten(-2)  # value exact, gradient relaxed

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-probability of one-hot codes ``(*sample, *batch, num_vars * K)``."""
        codes = value.unflatten(-1, (self.num_vars, self.num_categories))
        return (codes * self.logits).sum((-1, -2))

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum((-1, -2))


class Bernoullis(Distribution):
    """``num_vars`` independent binary variables, relaxed by the binary Concrete.

    Args:
        logits: ``(*batch, num_vars)`` log-odds of 1.
        temperature: of the relaxation in ``rsample`` (> 0).
        hard: ``rsample`` returns exact 0/1 values with the relaxed gradient.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"logits": constraints.real}
    has_rsample = True

    def __init__(
        self,
        logits: torch.Tensor,
        temperature: float = 1.0,
        hard: bool = False,
        validate_args: bool | None = False,
    ) -> None:
        if logits.dim() < 1:
            raise ConfigError("logits must be (*batch, num_vars)")
        self.logits = logits
        self.temperature, self.hard = _check_temperature(temperature), hard
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    @property
    def variance(self) -> torch.Tensor:
        return self.probs * (1 - self.probs)

    def expand(self, batch_shape: _Shape, _instance: object = None) -> Bernoullis:
        shape = torch.Size(batch_shape) + self.logits.shape[-1:]
        return Bernoullis(self.logits.expand(shape), self.temperature, self.hard)

    def _logistic(self, shape: torch.Size) -> torch.Tensor:
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        u = u.clamp(1e-7, 1 - 1e-7)
        return u.log() - (-u).log1p()

    def sample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        with torch.no_grad():
            noise = self._logistic(torch.Size(sample_shape) + self.logits.shape)
            return (self.logits + noise > 0).to(self.logits.dtype)  # P(1) = sigmoid(logits)

    def rsample(self, sample_shape: _Shape = ()) -> torch.Tensor:
        scores = self.logits + self._logistic(torch.Size(sample_shape) + self.logits.shape)
        relaxed = torch.sigmoid(scores / self.temperature)
        if not self.hard:
            return relaxed
        return (scores > 0).to(relaxed.dtype) - relaxed.detach() + relaxed

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-probability of 0/1 values ``(*sample, *batch, num_vars)``."""
        log_one, log_zero = F.logsigmoid(self.logits), F.logsigmoid(-self.logits)
        return (value * log_one + (1 - value) * log_zero).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -self.log_prob(self.probs)  # linear in the value: the expected -log p


@register_kl(Categoricals, Categoricals)
def _kl_categoricals(q: Categoricals, p: Categoricals) -> torch.Tensor:
    return (q.probs * (q.logits - p.logits)).sum((-1, -2))


@register_kl(Bernoullis, Bernoullis)
def _kl_bernoullis(q: Bernoullis, p: Bernoullis) -> torch.Tensor:
    q1, q0 = F.logsigmoid(q.logits), F.logsigmoid(-q.logits)
    p1, p0 = F.logsigmoid(p.logits), F.logsigmoid(-p.logits)
    return (q1.exp() * (q1 - p1) + q0.exp() * (q0 - p0)).sum(-1)
