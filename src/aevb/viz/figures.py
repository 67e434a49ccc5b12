"""The figures of a run: file names and captions (no plotting here, so it imports fast)."""

from __future__ import annotations

FIGURES: dict[str, tuple[str, str]] = {
    "latent": ("latent.png", "Posterior means E_q[z|x] of held-out data, coloured by label."),
    "latent-animation": ("latent.gif", "The posterior means during training."),
    "prior-grid": (
        "prior_grid.png",
        "Prior predictive: means of p(x|z) for latents evenly spaced on [-3, 3] "
        "(a grid for 2-D latents, one row per dimension otherwise).",
    ),
    "samples": ("samples.png", "Means of p(x|z) for z ~ p(z)."),
    "reconstructions": ("reconstructions.png", "Held-out inputs beside their reconstructions."),
    "interpolations": ("interpolations.png", "Decoded straight lines between encoded inputs."),
    "marginals": ("marginals.png", "Histograms of each column: data against model samples."),
    "curves": (
        "learning_curves.png",
        "ELBO, reconstruction and KL per epoch (nats); for text, active units and I(x; z).",
    ),
    "kl": ("kl_per_dimension.png", "KL and activity per latent dimension."),
    "series": ("series.png", "Sequences: five held-out ones beside five drawn from the model."),
    "sentences": (
        "sentences.txt",
        "Text: sentences from the prior (ancestral, then greedy), held-out lines each followed "
        "by its greedy reconstruction from E_q[z|x], and homotopies: greedy decodings of five "
        "points on the line between two lines' codes (Bowman et al. 2016, Table 8).",
    ),
    "codes": (
        "code_usage.png",
        "VQ-VAE: how often held-out data use each code, most used first, and the codebook's "
        "usage per epoch.",
    ),
}
SNAPSHOTS = "snapshots.safetensors"
