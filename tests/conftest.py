"""Shared test setup for the numerical core: hypothesis profiles, float64 test-matrix builders, devices.

Hypothesis profiles: ``ci`` (default; derandomized, 25 examples) and ``dev`` (300 random examples, for hunting);
choose with the environment variable ``HYPOTHESIS_PROFILE``.

Matrix builders return float64 numpy arrays (the reference side); tests convert them with :func:`t64`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=300, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CUDA = torch.cuda.is_available()

# Device parameters: the CUDA one is marked ``gpu`` and skipped without a CUDA device.
devices = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]),
]
DEVICES = devices

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---------------------------------------------------------------- matrix builders (float64, numpy)


def haar(k: int, p: int, rng: np.random.Generator) -> np.ndarray:
    """k×p matrix with Haar-distributed orthonormal columns (QR of a Gaussian with diag(R) > 0), p <= k."""
    Q, R = np.linalg.qr(rng.standard_normal((k, p)))
    return Q * np.sign(np.diag(R))


def spectrum_matrix(m: int, n: int, sigma, seed: int) -> np.ndarray:
    """W = U diag(sigma) Vᵀ (m×n, float64) with Haar-random orthonormal U (m×p), V (n×p), p = len(sigma)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    p = sigma.shape[0]
    if p > min(m, n):
        raise ValueError(f"len(sigma) = {p} exceeds min(m, n) = {min(m, n)}")
    rng = np.random.default_rng(seed)
    U, V = haar(m, p, rng), haar(n, p, rng)
    return (U * sigma) @ V.T


def power_law(p: int, alpha: float, scale: float = 1.0) -> np.ndarray:
    """Spectrum σ_j = scale · j^(−alpha), j = 1..p (alpha = 0: flat; alpha = 2: fast decay)."""
    return scale * np.arange(1, p + 1, dtype=np.float64) ** (-float(alpha))


def low_rank(m: int, n: int, k: int, seed: int) -> np.ndarray:
    """Generic rank-k m×n float64 matrix G₁G₂ with Gaussian factors (every k rows / columns span)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)) @ rng.standard_normal((k, n))


def t64(x: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """float64 torch tensor on ``device`` from a numpy array."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(device)


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def np64(x: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of a tensor (any dtype, any device)."""
    return x.detach().to("cpu", torch.float64).numpy()


def rel_fro(W: np.ndarray, What: np.ndarray) -> float:
    """‖W − Ŵ‖_F / ‖W‖_F in float64."""
    return float(np.linalg.norm(W - What) / np.linalg.norm(W))


def tail_errors(W: np.ndarray) -> np.ndarray:
    """e[j] = ‖W − [W]_j‖_F / ‖W‖_F for j = 0..min(m, n), from numpy's SVD.

    Tails are summed from the smallest σ upwards (no ‖W‖² − Σ σ² cancellation), so they stay accurate far below
    sqrt(eps)·‖W‖.
    """
    s = np.linalg.svd(W, compute_uv=False)
    tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1])  # tails[j] = sqrt(Σ_{i >= j} σ_i²)
    return np.r_[tails, 0.0] / tails[0]


def eckart_young(W: np.ndarray, r: int) -> float:
    """Optimal relative rank-r error ‖W − [W]_r‖_F / ‖W‖_F (Eckart–Young), from numpy's SVD."""
    return float(tail_errors(W)[r])


def eckart_young_rank(W: np.ndarray, tol: float) -> int:
    """Smallest j >= 1 with ‖W − [W]_j‖_F / ‖W‖_F <= tol (numpy SVD)."""
    e = tail_errors(W)[1:]  # e[j-1]: rank j
    return int(np.argmax(e <= tol)) + 1


def projector(U: np.ndarray) -> np.ndarray:
    """Orthogonal projector onto range(U) (U need not be orthonormal)."""
    Q, _ = np.linalg.qr(U)
    return Q @ Q.T


# ---------------------------------------------------------------- hypothesis strategies


class Problem(NamedTuple):
    """A hypothesis-drawn test problem: W = spectrum_matrix(m, n, power_law(min(m, n), alpha), seed)."""

    m: int
    n: int
    rank: int
    alpha: float
    seed: int

    def W(self) -> np.ndarray:
        return spectrum_matrix(self.m, self.n, power_law(min(self.m, self.n), self.alpha), self.seed)


@st.composite
def problems(draw, min_dim: int = 4, max_dim: int = 40, min_alpha: float = 0.0, max_alpha: float = 2.0) -> Problem:
    """Draw (m, n, rank, alpha, seed) with m, n in [min_dim, max_dim], 1 <= rank <= min(m, n)."""
    m = draw(st.integers(min_dim, max_dim))
    n = draw(st.integers(min_dim, max_dim))
    rank = draw(st.integers(1, min(m, n)))
    alpha = draw(st.floats(min_alpha, max_alpha, allow_nan=False))
    seed = draw(st.integers(0, 2**32 - 1))
    return Problem(m, n, rank, alpha, seed)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def single_thread():
    """Run the test with one intra-op thread (MKL's threaded QR is ~300× slower on tiny matrices on 2 cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(params=devices)
def device(request) -> str:
    """Every available device ("cpu", and "cuda" when present)."""
    return request.param
