"""Labels as a partly observed latent variable: M2 and the conditional VAE.

M2 (Kingma, Rezende, Mohamed & Welling 2014) is the generative model

    p(x, y, z) = p(x|y, z) p(y) p(z),   with   q(z|x, y) q(y|x),

fitted to data where only some labels are observed. For a labelled pair the ELBO is

    L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z)),

and for an unlabelled x the label is summed out exactly by enumerating the classes:

    U(x) = sum_y q(y|x) L(x, y) + H(q(y|x))  <=  log p(x).

The classifier q(y|x) would learn only from U; the term ``alpha * log q(y|x)`` on labelled
data trains it directly (the paper's eq. 9). Without a classifier the same model is a
conditional VAE, p(x|y,z) p(z) with q(z|x,y), fitted on fully labelled data. Labels are
integers ``0 .. num_classes - 1``; :data:`UNLABELLED` (-1) marks a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Distribution

from ..data.ondisk import check_finite
from ..distributions.kl import kl
from ..errors import DataError
from ..nn.mlp import MLP, LabelConditionedMLP
from ..nn.utils import out_dim
from .heads import BernoulliHead, ClassHead, NormalHead
from .priors import StandardNormalPrior
from .vae import VAE, float32_outputs

UNLABELLED = -1


class Conditional(nn.Module):
    """``head(after(body(before(inputs), y)))``: a label-conditioned network returning a
    distribution; ``before`` and ``after`` are unconditioned bodies (e.g. convolutional ones
    around a :class:`aevb.nn.LabelConditionedMLP`), the identity when not given."""

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
        *,
        before: nn.Module | None = None,
        after: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body, self.head = body, head
        self.before = before if before is not None else nn.Identity()
        self.after = after if after is not None else nn.Identity()

    def forward(self, inputs: torch.Tensor, y: torch.Tensor) -> Distribution:
        return self.head(self.after(self.body(self.before(inputs), y)))


class SemiSupervisedVAE(nn.Module):
    """M2: p(x|y,z) p(y) p(z) with q(z|x,y) q(y|x); a conditional VAE when ``classifier=None``.

    Args:
        encoder: ``(x (*batch, D), y (*batch)) -> q(z|x,y)``, event ``(latent_dim,)``.
        decoder: ``(z (*batch, latent_dim), y (*batch)) -> p(x|y,z)``.
        prior: ``() -> p(z)``.
        num_classes: number of labels.
        classifier: ``x (B, D) -> q(y|x)``, a ``Categorical`` with batch_shape ``(B,)``;
            ``None`` for a conditional VAE (labels always observed).
        features: a fixed map applied to the data before everything else, so that the
            model is over ``features(x)``; :class:`M1Features` makes the stacked M1+M2 model.

    p(y) is uniform over the classes (a buffer, as in the paper).

    Example:
        >>> model = mlp_m2(784, 10, latent_dim=50)
        >>> model.predict(torch.zeros(3, 784)).shape
        torch.Size([3])
    """

    label_logits: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        num_classes: int,
        classifier: nn.Module | None = None,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        if num_classes < 2:
            raise ValueError(f"a label needs num_classes >= 2, got {num_classes}")
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.classifier = classifier
        float32_outputs(encoder, decoder, prior, *([classifier] if classifier else []))
        self.num_classes = num_classes
        self.register_buffer("label_logits", torch.zeros(num_classes))

    @property
    def latent_dim(self) -> int:
        return self.prior().event_shape[-1]

    def label_prior(self) -> Categorical:
        """p(y), uniform."""
        return Categorical(logits=self.label_logits)

    def featurize(self, x: torch.Tensor) -> torch.Tensor:
        """The data as the model sees them: ``features(x)``, or ``x`` without features."""
        return x if self.features is None else self.features(x)

    def to_data(self, v: torch.Tensor) -> torch.Tensor:
        """Map model-space values back to data space where the features can (M1's decoder)."""
        back = getattr(self.features, "to_data", None)
        return v if back is None else back(v)

    def classify(self, x: torch.Tensor) -> Categorical:
        """q(y|x) for ``x (B, D)``."""
        return self._classify(self.featurize(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> Distribution:
        """q(z|x,y); ``y`` long, broadcast against ``x``'s batch dimensions."""
        return self.encoder(self.featurize(x), y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> Distribution:
        """p(x|y,z) (over ``features(x)`` when there are features); ``y`` long, broadcast
        against ``z``'s batch dimensions."""
        return self.decoder(z, y)

    def conditional_elbo(
        self, x: torch.Tensor, y: torch.Tensor, *, num_samples: int = 1, beta: float = 1.0
    ) -> torch.Tensor:
        """Bound on log p(x|y) (the conditional VAE's ELBO): ``(*y batch)`` nats.

        ``x (B, D)``; ``y (B,)`` or ``(C, B)`` (every class for each x, as in the sum over
        labels); the KL is closed form when registered. ``beta`` weights the KL of z (a
        bound only for ``beta = 1``): above 1 it makes z a costlier place than y for what
        separates the classes.
        """
        return self._conditional_elbo(self.featurize(x), y, num_samples, beta)

    def labelled_elbo(
        self, x: torch.Tensor, y: torch.Tensor, *, num_samples: int = 1, beta: float = 1.0
    ) -> torch.Tensor:
        """L(x, y) = conditional ELBO + log p(y), a bound on log p(x, y): ``(B,)`` nats."""
        bound = self._conditional_elbo(self.featurize(x), y, num_samples, beta)
        return bound + self.label_prior().log_prob(y)

    def unlabelled_elbo(
        self, x: torch.Tensor, *, num_samples: int = 1, beta: float = 1.0
    ) -> torch.Tensor:
        """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), a bound on log p(x): ``(B,)`` nats.

        The sum enumerates all classes (one decoder pass per class, batched as ``(C, B)``).
        """
        v = self.featurize(x)  # once, not once per class
        qy = self._classify(v)
        classes = torch.arange(self.num_classes, device=x.device)
        every = classes[:, None].expand(-1, x.shape[0])  # (C, B)
        bound = self._conditional_elbo(v, every, num_samples, beta)
        bound = bound + self.label_prior().log_prob(every)
        return (qy.probs.T * bound).sum(0) + qy.entropy()

    # -- on model-space values v = features(x) ------------------------------------------------

    def _classify(self, v: torch.Tensor) -> Categorical:
        if self.classifier is None:
            raise ValueError(
                "this conditional VAE has no classifier q(y|x): build it with a classifier "
                "(mlp_m2) to predict labels or to learn from unlabelled data"
            )
        return self.classifier(v)

    def _conditional_elbo(
        self, v: torch.Tensor, y: torch.Tensor, num_samples: int, beta: float
    ) -> torch.Tensor:
        qz = self.encoder(v, y)
        z = qz.rsample((num_samples,))
        log_px_z = self.decode(z, y).log_prob(v).mean(0)
        return log_px_z - beta * kl(qz, self.prior(), z)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """q(y|x) as ``(B, num_classes)`` probabilities."""
        return torch.cat([self.classify(part).probs for part in x.split(batch_size)])

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The most probable label under q(y|x): ``(B,)`` long."""
        return self.predict_proba(x, batch_size).argmax(-1)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, *, mean: bool = False) -> torch.Tensor:
        """x ~ p(x|y, z), z ~ p(z), one per entry of ``y (n,)``: ``(n, D)`` (or the means).

        With M1 features the draw is mapped back to data space through M1's decoder."""
        z = self.prior().sample(y.shape)
        px = self.decode(z, y)
        return self.to_data(px.mean if mean else px.sample())

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Keep each example's style z = E_q[z|x, y] and decode it with every label.

        Args:
            x: ``(n, D)`` examples.
            y: their ``(n,)`` labels; ``None`` uses the classifier's prediction.

        Returns:
            ``(n, num_classes, D)`` means of p(x|y', z) for y' = 0 .. num_classes - 1.
        """
        y = self.predict(x) if y is None else y
        z = self.encode(x, y).mean  # (n, latent_dim)
        classes = torch.arange(self.num_classes, device=x.device)
        return self.to_data(self.decode(z[:, None, :], classes[None, :]).mean)

    @torch.no_grad()
    def check_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Raise :class:`aevb.DataError` unless ``x`` and labels ``y`` fit the model."""
        check_finite(x)
        if self.features is not None:
            check = getattr(self.features, "check_data", None)
            if check is not None:
                check(x)
            x = self.features(x)
        if y.shape != x.shape[:1] or y.dtype not in (torch.int32, torch.int64):
            raise DataError(
                f"labels must be one integer per example, shape ({x.shape[0]},), got "
                f"{tuple(y.shape)} of {y.dtype}: pass a label array aligned with the rows"
            )
        bad = (y < UNLABELLED) | (y >= self.num_classes)
        if bool(bad.any()):
            row = int(bad.nonzero()[0])
            raise DataError(
                f"label {int(y[row])} at row {row} is outside 0..{self.num_classes - 1}; mark a "
                f"missing label with {UNLABELLED} (255 in uint8 label files) or raise num_classes"
            )
        if self.classifier is None and bool((y == UNLABELLED).any()):
            raise DataError(
                f"{int((y == UNLABELLED).sum())} rows have no label, but a conditional VAE needs "
                "every label: drop those rows or use the semi-supervised model (mlp_m2)"
            )
        px = self.decode(self.prior().sample((1,)), y[:1].clamp(min=0))
        if tuple(x.shape[1:]) != tuple(px.event_shape):
            raise DataError(
                f"the model's likelihood is over examples of shape {tuple(px.event_shape)}, "
                f"got data of shape {tuple(x.shape)}"
            )
        support = px.support
        if support is not None and not bool(support.check(x).all()):
            raise DataError(
                "data values lie outside the support of the likelihood "
                f"{type(px).__name__}: binarize the data or choose another likelihood"
            )


class M1Features(nn.Module):
    """x -> standardized z1 ~ q(z1|x) of a trained VAE's active units: M2's data in M1+M2.

    Kingma et al. (2014) stack M2 on the latent space of a VAE (M1) trained without labels.
    Units whose posterior mean hardly varies over the data (standard deviation below
    ``threshold``, Burda et al.'s activity criterion) carry no information and are dropped;
    the rest are standardized. The M1 is frozen. Training draws z1 afresh at each call, as
    Kingma et al.'s code does per minibatch (new noisy copies of the few labelled images).

    Args:
        m1: a trained :class:`aevb.VAE`.
        x: ``(n, D)`` data fixing the standardization (``None``: set by ``load_state_dict``).
        threshold: activity threshold on the standard deviation of E_q[z|x].
        sample: draw z1 ~ q(z1|x) in training mode (False, and in eval mode: its mean).

    Shapes:
        ``(*batch, D)`` -> ``(*batch, out_dim)``; :meth:`to_data` maps back through M1's decoder.
    """

    loc: torch.Tensor
    scale: torch.Tensor
    active: torch.Tensor

    def __init__(
        self, m1: VAE, x: torch.Tensor | None = None, threshold: float = 0.1, *, sample: bool = True
    ) -> None:
        super().__init__()
        self.m1, self.sample = m1.eval().requires_grad_(False), sample
        if x is None:
            loc, scale = torch.zeros(m1.latent_dim), torch.ones(m1.latent_dim)
        else:
            with torch.no_grad():
                means = torch.cat([m1.encode(part).mean for part in x.split(1000)])
            loc, scale = means.mean(0), means.std(0)
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale.clamp_min(1e-6))
        self.register_buffer("active", scale > threshold if x is not None else scale > 0)
        self.out_dim = int(self.active.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            qz = self.m1.encode(x)
            z1 = qz.sample() if self.sample and self.training else qz.mean
        return ((z1 - self.loc) / self.scale)[..., self.active]

    def train(self, mode: bool = True) -> M1Features:
        self.training = mode  # draws in training mode; M1 itself stays frozen in eval mode
        self.m1.eval()
        return self

    def to_data(self, v: torch.Tensor) -> torch.Tensor:
        """Mean of M1's p(x|z1) at z1 = the unstandardized features (inactive units at their
        mean)."""
        z = self.loc.expand(*v.shape[:-1], -1).clone()
        z[..., self.active] = v * self.scale[self.active] + self.loc[self.active]
        return self.m1.decode(z).mean

    def check_data(self, x: torch.Tensor) -> None:
        self.m1.check_data(x)


def mlp_m2(
    data_dim: int,
    num_classes: int,
    latent_dim: int = 50,
    hidden_dims: Sequence[int] = (500,),
    *,
    likelihood: Callable[..., nn.Module] = BernoulliHead,
    activation: type[nn.Module] = nn.Softplus,
    classifier: bool = True,
    features: nn.Module | None = None,
    image_bodies: Callable[[int], tuple[nn.Module, nn.Module, nn.Module | None]] | None = None,
) -> SemiSupervisedVAE:
    """M2 (or, with ``classifier=False``, a conditional VAE) from MLPs.

    The encoder q(z|x,y) and decoder p(x|y,z) see the label as a one-hot code concatenated to
    their input (:class:`aevb.nn.LabelConditionedMLP`); the classifier q(y|x) is an MLP
    of the same widths. The defaults are the paper's MNIST setting: one hidden layer of 500
    softplus units, 50 latent dimensions.

    Args:
        likelihood: head factory ``(in_dim, data_dim) -> head`` of p(x|y,z), e.g.
            ``BernoulliHead`` for binary pixels or ``NormalHead`` for real features (M1+M2).
        features: a fixed map applied to the data first, e.g. :class:`M1Features`; then
            ``data_dim`` is its output size (``features.out_dim``).
        image_bodies: for images, ``width -> (encoder body, classifier body, decoder body)``:
            convolutional bodies of x for q(z|x,y) and q(y|x), and from the decoder MLP's
            last ``width`` to the pixels' features (:class:`aevb.nn.ConvDecoder`, whose
            per-pixel projection the likelihood head then uses; ``None``: an MLP decoder).

    Example (M1+M2, with ``m1`` a trained :class:`aevb.VAE`):
        >>> features = M1Features(m1, train_x)  # doctest: +SKIP
        >>> m2 = mlp_m2(
        ...     features.out_dim, 10, likelihood=NormalHead, features=features
        ... )  # doctest: +SKIP
    """
    decoder_widths = tuple(reversed(hidden_dims))
    x_body, qy_body, pixels = image_bodies(decoder_widths[-1]) if image_bodies else (None,) * 3
    x_dim = out_dim(x_body) if x_body is not None else data_dim
    encoder = Conditional(
        LabelConditionedMLP(x_dim, num_classes, hidden_dims, activation),
        NormalHead(hidden_dims[-1], latent_dim),
        before=x_body,
    )
    decoder_body = LabelConditionedMLP(latent_dim, num_classes, decoder_widths, activation)
    if pixels is None:
        head = likelihood(decoder_body.out_dim, data_dim)
    else:
        head = likelihood(out_dim(pixels), data_dim, projection=pixels.projection)
    decoder = Conditional(decoder_body, head, after=pixels)
    qy = None
    if classifier:
        body = MLP(x_dim, hidden_dims, activation)
        first = [qy_body] if qy_body is not None else []
        qy = nn.Sequential(*first, body, ClassHead(body.out_dim, num_classes))
    prior = StandardNormalPrior(latent_dim)
    return SemiSupervisedVAE(encoder, decoder, prior, num_classes, qy, features)


def labelled_subset(y: torch.Tensor, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` labelled rows of each class, drawn with ``seed``.

    Rows marked :data:`UNLABELLED` are never drawn. E.g. the 100-label MNIST benchmark is
    ``labelled_subset(train_y, 10)``; the other rows' labels are then hidden.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in sorted(set(y[y != UNLABELLED].tolist())):
        rows = (y == label).nonzero().flatten()
        if len(rows) < per_class:
            raise DataError(f"class {label} has {len(rows)} labelled rows, fewer than {per_class}")
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def error_rate(model: SemiSupervisedVAE, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of the labelled rows of ``x`` whose predicted label is wrong."""
    known = y != UNLABELLED
    return float((model.predict(x[known]) != y[known]).double().mean())
