"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_python_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(BLOCKS[0])
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    elbo, *_ = result.stdout.strip().splitlines()[-1].split()
    assert -40 < float(elbo) < 0  # nats per 8x8 binary digit


def test_add_a_likelihood_example_is_a_working_head() -> None:
    namespace: dict[str, object] = {}
    prelude = (
        "import torch\nfrom torch import nn\n"
        "from torch.distributions import Distribution, Independent, Poisson\n"
    )
    exec(prelude + BLOCKS[1], namespace)
    head = namespace["PoissonHead"](3, 4)
    h, x = torch.randn(5, 3), torch.randint(0, 6, (5, 4)).float()
    rate = head.log_rate(h).exp().detach().numpy()
    expected = stats.poisson.logpmf(x.numpy(), rate).sum(-1)
    np.testing.assert_allclose(head(h).log_prob(x).detach().numpy(), expected, rtol=1e-5)
