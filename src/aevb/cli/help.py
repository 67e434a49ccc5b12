"""One line per option of ``aevb train``, shown by ``--help`` after the option's choices and
default (a test checks that every config field has one). Text only: no imports, so that
``aevb --help`` stays instant."""

# One line per option, for `aevb train --help` (a test checks every option has one).
HELP = {
    # [data]
    "source": "the data: a file (.npy, .npz[:key], .csv, .parquet, MNIST IDX, .amat), a folder "
    "of images or of Parquet parts, or a named dataset",
    "binarize": "threshold grey levels into {0, 1} at this value (for bernoulli)",
    "valid_fraction": "fraction of the rows held out for validation and early stopping",
    "test_fraction": "fraction of the rows held out for the test metrics",
    "scale": "divide every value by this (255: 8-bit pixels to [0, 1]; none: as read)",
    "labels": "m2/cvae: a label column of the CSV or a file with one label per row",
    "num_labelled": "m2: keep this many training labels, balanced over classes; hide the rest",
    "stream": "leave .npy/.csv/Parquet rows on disk and read them a batch at a time (data "
    "larger than memory)",
    "valid_source": "text: validation lines from this file (with test_source: a fixed split)",
    "test_source": "text: test lines from this file",
    "max_length": "text: words kept per line; longer lines are cut, and the count reported",
    "vocab_size": "text: the vocabulary's size, the most frequent tokens of the training lines",
    "lowercase": "text: fold case before building the vocabulary",
    "sequences": "rows are real-valued sequences with --body rnn: .npy (n, T) or (n, T, C) with "
    "NaN after each end, .npz of values and lengths, or long-format CSV",
    "sequence_column": "sequences from CSV: the column naming each sequence",
    "time_column": "sequences from CSV: the column ordering each sequence's steps",
    # [model]
    "kind": "the model: vae, m2 (semi-supervised, labels partly observed), cvae (conditional)",
    "m1": "m2/cvae over this VAE run's posterior means (M1+M2; Kingma et al. 2014)",
    "likelihood": "p(x|z), the decoder's distribution of one datum (of each step, for "
    "sequences; text runs use the vocabulary's categorical)",
    "latent_dim": "size of the latent variable z",
    "hidden_dims": "widths of the encoder's hidden layers, comma-separated (decoder: reversed)",
    "activation": "activation of the hidden layers",
    "body": "encoder and decoder networks: mlp, conv (images), resnet (conv + residual blocks), "
    "rnn (text: a recurrent encoder and an autoregressive decoder, Bowman et al. 2016)",
    "cell": "rnn: the recurrent cell; hidden_dims gives one layer per entry (equal widths)",
    "embed_dim": "rnn: size of the word embeddings",
    "bidirectional": "rnn: the encoder reads each line in both directions",
    "word_dropout": "rnn: chance that an input word of the decoder is replaced by <unk> while "
    "training (against posterior collapse)",
    "dropout": "rnn: dropout on the decoder's embeddings and outputs and between stacked layers",
    "channels": "conv/resnet: channels of each stride-2 stage, comma-separated (decoder: reversed)",
    "norm": "conv/resnet: normalization after each convolution",
    "spatial_latents": "conv/resnet: z_1 is a map, latent_dim channels at each position of the "
    "encoder's last h x w map (latent_dim * h * w values)",
    "latent_layers": "sizes of further latent layers z_2..z_L above z_1, e.g. 50 (none: one layer)",
    "layer_hidden_dims": "hierarchies: widths of the MLPs between latent layers",
    "hierarchy": "hierarchies: bottom-up inference (IWAE 2-layer) or ladder (top-down)",
    "prior": "p(z): standard normal, learned normal, mixture of Gaussians, VampPrior; for "
    "discrete latents uniform or learned-discrete; for vq uniform or autoregressive (a causal "
    "transformer over the codes)",
    "prior_components": "mixture components (10) or VampPrior pseudo-inputs (500)",
    "pseudo_inputs": "vamp: start the pseudo-inputs at noise or at random training examples",
    "posterior": "q(z|x): diagonal Gaussian, full-covariance Gaussian, planar flow; or discrete: "
    "categorical (latent_dim variables of latent_categories values), bernoulli (latent_dim bits), "
    "vq (latent_dim codes of code_dim values from a codebook: VQ-VAE)",
    "latent_categories": "categorical latents: values of each variable (one-hot codes)",
    "straight_through": "discrete latents: train on exact codes with the relaxed gradient",
    "codebook_size": "vq: codes in the codebook (K)",
    "code_dim": "vq: values of each code vector",
    "codebook_ema": "vq: codes follow the encoder by moving averages (else by the codebook loss)",
    "likelihood_scale": "normal-fixed: the fixed standard deviation of p(x|z)",
    "num_categories": "categorical: values per dimension (0 .. num_categories - 1); "
    "discretized-logistic: levels per value in [0, 1]",
    "likelihood_components": "discretized-logistic: mixture components per value",
    # [train]
    "objective": "the bound to maximize: elbo, or iwae with --k samples",
    "k": "iwae: importance samples per example",
    "iwae_gradient": "iwae: gradient estimator (dreg: doubly reparameterized, Tucker et al.)",
    "epochs": "most passes over the training data",
    "batch_size": "examples per gradient step (m2: unlabelled rows per step)",
    "lr": "learning rate",
    "lr_decay": "multiply the learning rate by this after every epoch",
    "optimizer": "the optimizer of the dense parameters",
    "patience": "stop after this many epochs without a better validation bound (none: never)",
    "beta": "weight of the KL term (beta-VAE; 1 is the ELBO)",
    "kl_warmup_epochs": "anneal the KL weight from 0 to beta over these epochs",
    "kl_schedule": "the annealing's shape: linear, sigmoid, or cyclical (kl_cycles cycles of "
    "kl_warmup_epochs epochs, Fu et al. 2019)",
    "kl_cycles": "cyclical: number of cycles before the weight stays at beta",
    "aggressive_steps": "aggressive training (He et al. 2019): up to this many encoder steps "
    "before each decoder step until I(x; z) stops rising (100 in the paper; 0: off)",
    "free_bits": "nats per latent dimension below which KL is not penalized",
    "num_samples": "z samples per example in the ELBO",
    "analytic_kl": "closed-form KL where one exists (else Monte Carlo)",
    "stl": "sticking-the-landing gradient (needs --no-analytic-kl)",
    "clip_grad_norm": "clip the gradient's global norm to this value",
    "precision": "bfloat16 runs the matrix products in bfloat16; densities stay float32",
    "compile": "torch.compile the objective, forward and backward (10-20 s once)",
    "device": "where to train: cpu, cuda or cuda:N",
    "tensorboard": "log terms, KL per dimension, lr and image grids to RUN/tensorboard",
    "snapshot_every": "steps between recorded posterior means for latent.gif (0: none)",
    "max_minutes": "wall-time budget: no epoch starts that would end past it",
    "init_from": "a run folder whose model.safetensors starts training",
    "inference": "amortized (an encoder) or mean-field (a free q_i per training example)",
    "local_lr": "mean-field: learning rate of the per-example parameters (SparseAdam)",
    "local_steps": "mean-field: Adam steps fitting q(z) of each test example",
    "refine_steps": "semi-amortized training: gradient steps on q from the encoder's output",
    "refine_lr": "semi-amortized: step size of those steps",
    "refine_differentiable": "semi-amortized: train the encoder through the steps (SA-VAE)",
    "alpha": "m2: weight of log q(y|x) on labelled rows (the paper's alpha / N)",
    "labelled_per_batch": "m2: labelled rows added to every minibatch",
    "temperature": "discrete latents: the Gumbel-softmax temperature at the first step",
    "temperature_min": "discrete latents: the temperature is annealed down to this",
    "temperature_rate": "discrete latents: temperature = max(min, start * exp(-rate * step))",
    "commitment": "vq: weight of the commitment term |z_e - sg(z_q)|^2",
    "prior_epochs": "vq with the autoregressive prior: epochs refitting it to the training codes",
}

# Runnable examples that end each subcommand's --help.
EXAMPLES = {
    "train": [
        "aevb train                                   # the default VAE on the bundled digits",
        "aevb train --data digits-binary --likelihood bernoulli --objective iwae --out runs/iwae",
        "aevb train --model m2 --data digits-binary --likelihood bernoulli --num-labelled 100",
        "aevb train --data big.npy --stream --scale 255 --out runs/big   # rows read from disk",
        "aevb train --data digits-binary --likelihood bernoulli --posterior categorical "
        "--latent-dim 20 --latent-categories 10 --prior uniform",
        "aevb train --data digits-binary --likelihood bernoulli --posterior vq --latent-dim 8 "
        "--codebook-size 64 --code-dim 4 --prior autoregressive --out runs/vq",
        "aevb train --data lines.txt.gz --body rnn --latent-dim 32 --hidden-dims 256 "
        "--free-bits 0.25 --kl-schedule cyclical --kl-warmup-epochs 2 --out runs/text",
        "aevb train --data series.csv --sequences --body rnn --likelihood student-t "
        "--latent-dim 8 --out runs/series",
    ],
    "sample": [
        "aevb sample runs/iwae --num 64 --out samples.png",
        "aevb sample runs/m2 --label 3 --mean --out threes.npy",
    ],
    "encode": [
        "aevb encode runs/iwae --out codes.csv",
        "aevb encode runs/iwae --data new.npy --refine 50 --out codes.npy",
        "aevb encode runs/vq --out codes.csv      # a VQ-VAE run: the code indices of each datum",
    ],
    "reconstruct": [
        "aevb reconstruct runs/iwae --num 16 --out reconstructions.png",
        "aevb reconstruct runs/iwae --data new.npy --out reconstructions.npy",
    ],
    "plot": [
        "aevb plot runs/iwae                          # every figure and report.html",
        "aevb plot runs/iwae --what latent,samples --method tsne",
    ],
    "evaluate": [
        "aevb evaluate runs/iwae --k 5000             # log p(x) of the test split",
        "aevb evaluate runs/iwae --gaps --num 100 --families diagonal,full",
    ],
    "impute": [
        "aevb impute table.csv --out filled.csv",
        "aevb impute table.csv --missing NA,? --num-imputations 5 --out draws.csv",
    ],
    "predict": [
        "aevb predict runs/m2                         # the test split's labels",
        "aevb predict runs/m2 --data new.csv --labels label --out predictions.csv",
    ],
}
