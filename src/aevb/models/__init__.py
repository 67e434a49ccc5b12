"""Models: heads (hidden -> Distribution), priors (() -> Distribution), and the models that
compose them (VAE, M2 / conditional VAE, per-example q)."""

from .discrete import (
    BernoulliLatentHead,
    BernoulliPrior,
    CategoricalLatentHead,
    CategoricalPrior,
    ConcatenatedHead,
    ConcatenatedPrior,
)
from .flows import PlanarFlowHead
from .heads import (
    BernoulliHead,
    CategoricalHead,
    ColumnsHead,
    ContinuousBernoulliHead,
    DiscretizedLogisticHead,
    FullCovarianceNormalHead,
    LaplaceHead,
    NegativeBinomialHead,
    NormalHead,
    StudentTHead,
)
from .hierarchy import BottomUpEncoder, LadderEncoder, TopDownPrior, hierarchical_vae
from .per_example import PerExampleVAE
from .priors import LearnedNormalPrior, MixturePrior, StandardNormalPrior, VampPrior
from .quantized import Codebook, CodePrior, CodeTransformer, VQHead
from .semisupervised import UNLABELLED, M1Features, SemiSupervisedVAE, mlp_m2
from .sequence import PriorAsPosterior, SequenceLikelihood, series_vae, text_vae
from .vae import VAE, mlp_vae

__all__ = [
    "UNLABELLED",
    "VAE",
    "BernoulliHead",
    "BernoulliLatentHead",
    "BernoulliPrior",
    "BottomUpEncoder",
    "CategoricalHead",
    "CategoricalLatentHead",
    "CategoricalPrior",
    "CodePrior",
    "CodeTransformer",
    "Codebook",
    "ColumnsHead",
    "ConcatenatedHead",
    "ConcatenatedPrior",
    "ContinuousBernoulliHead",
    "DiscretizedLogisticHead",
    "FullCovarianceNormalHead",
    "LadderEncoder",
    "LaplaceHead",
    "LearnedNormalPrior",
    "M1Features",
    "MixturePrior",
    "NegativeBinomialHead",
    "NormalHead",
    "PerExampleVAE",
    "PlanarFlowHead",
    "PriorAsPosterior",
    "SemiSupervisedVAE",
    "SequenceLikelihood",
    "StandardNormalPrior",
    "StudentTHead",
    "TopDownPrior",
    "VQHead",
    "VampPrior",
    "hierarchical_vae",
    "mlp_m2",
    "mlp_vae",
    "series_vae",
    "text_vae",
]
