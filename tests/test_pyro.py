"""aevb models exported to Pyro: Pyro's ELBOs on the exported pair equal aevb's bounds for the
same parameters and the same z, and pyro.infer.SVI trains them on real data."""

from __future__ import annotations

import pytest
import torch

pyro = pytest.importorskip("pyro")
from pyro.infer import SVI, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO  # noqa: E402
from torch import nn  # noqa: E402

from aevb import (  # noqa: E402
    MLP,
    BernoulliHead,
    ConfigError,
    VampPrior,
    elbo,
    hierarchical_vae,
    iwae_bound,
    load_dataset,
    mlp_m2,
    mlp_vae,
)
from aevb.pyro import to_pyro  # noqa: E402

MODELS = {
    "mlp": lambda: mlp_vae(64, 4, (32,)),
    "vamp": lambda: _vamp(),
    "hierarchy": lambda: _hierarchy(),
}


def _hierarchy():
    decoder = nn.Sequential(MLP(4, (32,)), BernoulliHead(32, 64))
    return hierarchical_vae(MLP(64, (32,)), decoder, (4, 2), hidden_dims=(16,))


def _vamp():
    vae = mlp_vae(64, 4, (32,))
    vae.prior = VampPrior(vae.encoder, 64, 5)
    return vae


@pytest.fixture(autouse=True)
def _clear_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _digits(rows: int = 16) -> torch.Tensor:
    return load_dataset("digits-binary").x[:rows].double()


def _same_noise(function, seed: int = 3) -> float:
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(function())


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_trace_elbo_equals_aevb_monte_carlo_elbo(kind):
    torch.manual_seed(0)
    vae, x = MODELS[kind]().double(), _digits()
    model, guide = to_pyro(vae)
    pyro_elbo = -_same_noise(lambda: Trace_ELBO().loss(model, guide, x))
    aevb_elbo = _same_noise(lambda: elbo(vae, x, analytic_kl=False).elbo.sum())
    assert abs(pyro_elbo - aevb_elbo) < 1e-5, (pyro_elbo, aevb_elbo)


@torch.no_grad()
def test_the_same_z_replayed_gives_the_same_elbo():
    torch.manual_seed(0)
    vae, x = mlp_vae(64, 4, (32,)).double(), _digits()
    model, guide = to_pyro(vae)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    by_hand = vae.decode(z).log_prob(x) + vae.prior().log_prob(z) - vae.encode(x).log_prob(z)
    pyro_elbo = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    assert abs(float(pyro_elbo) - float(by_hand.sum())) < 1e-5
    assert model_trace.nodes["x"]["is_observed"]


@pytest.mark.parametrize("kind", ["mlp", "hierarchy"])
def test_mean_field_elbo_equals_aevb_closed_form_kl_elbo(kind):
    torch.manual_seed(0)
    vae, x = MODELS[kind]().double(), _digits()
    model, guide = to_pyro(vae)
    pyro_elbo = -_same_noise(lambda: TraceMeanField_ELBO().loss(model, guide, x))
    aevb_elbo = _same_noise(lambda: elbo(vae, x).elbo.sum())
    assert abs(pyro_elbo - aevb_elbo) < 1e-5, (pyro_elbo, aevb_elbo)


def test_renyi_alpha_zero_equals_aevb_iwae_bound():
    torch.manual_seed(0)
    vae, x = mlp_vae(64, 4, (32,)).double(), _digits()
    model, guide = to_pyro(vae)
    renyi = RenyiELBO(alpha=0, num_particles=7, vectorize_particles=True, max_plate_nesting=1)
    pyro_bound = -_same_noise(lambda: renyi.loss(model, guide, x))
    aevb_bound = _same_noise(lambda: iwae_bound(vae, x, k=7).elbo.sum())
    assert abs(pyro_bound - aevb_bound) < 1e-5, (pyro_bound, aevb_bound)


def test_num_data_scales_a_batch_to_the_data_set():
    torch.manual_seed(0)
    vae, x = mlp_vae(64, 4, (32,)).double(), _digits()
    model, guide = to_pyro(vae, num_data=160)
    scaled = -_same_noise(lambda: Trace_ELBO().loss(model, guide, x))
    aevb_elbo = _same_noise(lambda: elbo(vae, x, analytic_kl=False).elbo.sum())
    assert abs(scaled - 10 * aevb_elbo) < 1e-4


@pytest.mark.parametrize(
    "loss",
    [Trace_ELBO(), TraceMeanField_ELBO(), RenyiELBO(alpha=0, num_particles=5)],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "RenyiELBO"],
)
def test_svi_trains_the_exported_model_on_digits(loss):
    torch.manual_seed(0)
    x = load_dataset("digits-binary").x
    vae = mlp_vae(64, 8, (64,))
    model, guide = to_pyro(vae, num_data=x.shape[0])
    before = _same_noise(lambda: elbo(vae, x).elbo.mean(), seed=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 3e-3}), loss)
    for _epoch in range(6):
        for batch in torch.randperm(x.shape[0]).split(100):
            svi.step(x[batch])
    after = _same_noise(lambda: elbo(vae, x).elbo.mean(), seed=1)
    assert after > before + 10.0, (before, after)  # nats per digit: ~-45 -> ~-30


def test_m2_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="discrete label"):
        to_pyro(mlp_m2(64, 10, 4, (32,)))
