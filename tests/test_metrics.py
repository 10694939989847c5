"""Metrics against known answers: Parzen-window log-likelihood, Frechet distance (tagging tests below)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from scipy.special import logsumexp

from tagan.metrics import frechet_distance, parzen_log_likelihood, select_parzen_sigma

# --- generative: Parzen window ---------------------------------------------------------------------


def exact_parzen(samples: np.ndarray, test: np.ndarray, sigma: float) -> np.ndarray:
    """Brute-force float64 log density of each test point under the equal mixture of N(s_i, sigma^2 I)."""
    d = samples.shape[1]
    sq = ((test[:, None, :] - samples[None, :, :]) ** 2).sum(-1)  # (M, N)
    log_comp = -sq / (2 * sigma**2) - 0.5 * d * math.log(2 * math.pi * sigma**2)
    return logsumexp(log_comp, axis=1) - math.log(len(samples))


def test_parzen_single_sample_is_gaussian_log_density() -> None:
    s, x, sigma = np.array([[0.0, 1.0, 2.0]]), np.array([[1.0, 1.0, 0.0]]), 0.5
    expected = -5.0 / (2 * 0.25) - 1.5 * math.log(2 * math.pi * 0.25)  # |x - s|^2 = 5, D = 3
    mean, se = parzen_log_likelihood(s, x, sigma)
    assert mean == pytest.approx(expected, abs=1e-4) and math.isnan(se)


def test_parzen_matches_brute_force_mixture_and_standard_error() -> None:
    rng = np.random.default_rng(0)
    samples, test = rng.random((200, 16)), rng.random((37, 16))
    exact = exact_parzen(samples, test, 0.3)
    mean, se = parzen_log_likelihood(samples, test, 0.3, batch_size=5)  # ragged last batch
    assert mean == pytest.approx(exact.mean(), abs=1e-3)
    assert se == pytest.approx(exact.std(ddof=1) / math.sqrt(len(exact)), rel=1e-3)


def test_parzen_is_stable_far_from_all_samples() -> None:
    """exp(-|x-s|^2 / 2 sigma^2) underflows to 0 here; logsumexp must still give the exact value."""
    samples, test, sigma = np.zeros((4, 784)), np.full((2, 784), 1.0), 0.05
    mean, _ = parzen_log_likelihood(samples, test, sigma)
    expected = -784 / (2 * sigma**2) - 392 * math.log(2 * math.pi * sigma**2)
    assert np.isfinite(mean) and mean == pytest.approx(expected, rel=1e-5)


def test_parzen_is_exact_when_most_components_are_negligible() -> None:
    """784-d points near a few samples and far from the rest (the terms the kernel clamps at e^-80)."""
    rng = np.random.default_rng(3)
    samples = rng.random((300, 784))
    test = np.concatenate([samples[:20] + 0.02 * rng.standard_normal((20, 784)), rng.random((10, 784))])
    for sigma in (0.05, 0.18, 0.3, 2.0):
        mean, _ = parzen_log_likelihood(samples, test, sigma, batch_size=7)
        exact = exact_parzen(samples, test, sigma).mean()
        assert mean == pytest.approx(exact, rel=1e-6, abs=1e-3)


def test_parzen_approaches_analytic_density_of_gaussian_data() -> None:
    """Many samples from N(0, I): the Parzen density tends to N(0, (1 + sigma^2) I)."""
    rng = np.random.default_rng(1)
    d, sigma = 2, 0.3
    samples, test = rng.standard_normal((20000, d)), rng.standard_normal((500, d))
    var = 1 + sigma**2
    analytic = (-(test**2).sum(1) / (2 * var) - 0.5 * d * math.log(2 * math.pi * var)).mean()
    mean, se = parzen_log_likelihood(samples, test, sigma)
    assert abs(mean - analytic) < 0.02 and se > 0


def test_select_sigma_picks_the_best_of_the_grid() -> None:
    rng = np.random.default_rng(2)
    samples, val = rng.standard_normal((2000, 3)), rng.standard_normal((300, 3))
    grid = np.array([0.01, 0.05, 0.2, 0.4, 1.0, 3.0])
    best, curve = select_parzen_sigma(samples, val, grid, batch_size=64)
    assert list(curve) == grid.tolist()
    assert best == max(curve, key=curve.get) and best not in (0.01, 3.0)
    assert curve[0.4] == pytest.approx(parzen_log_likelihood(samples, val, 0.4)[0], abs=1e-6)


def test_parzen_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        parzen_log_likelihood(np.zeros((3, 4)), np.zeros((2, 5)), 0.1)
    with pytest.raises(ValueError, match="sigma"):
        parzen_log_likelihood(np.zeros((3, 4)), np.zeros((2, 4)), 0.0)


# --- generative: Frechet distance --------------------------------------------------------------------


def with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n points whose sample mean and (ddof=1) covariance are exactly `mean` and `cov`."""
    x = np.random.default_rng(seed).standard_normal((n, len(mean)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whiten: cov = I
    return x @ np.linalg.cholesky(cov).T + mean


def test_frechet_closed_form_diagonal_gaussians() -> None:
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    a = with_moments(500, mu_a, np.diag(var_a), 0)
    b = with_moments(700, mu_b, np.diag(var_b), 1)
    expected = (
        5.0 + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    )  # |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2 = 5 + 5
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)


def test_frechet_closed_form_full_covariances() -> None:
    rng = np.random.default_rng(3)
    f = 8
    ma, mb = rng.standard_normal((f, f)), rng.standard_normal((f, f))
    cov_a, cov_b = ma @ ma.T + 0.1 * np.eye(f), mb @ mb.T + 0.1 * np.eye(f)
    mu_a, mu_b = rng.standard_normal(f), rng.standard_normal(f)
    a, b = with_moments(300, mu_a, cov_a, 4), with_moments(400, mu_b, cov_b, 5)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(
        cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_of_a_set_with_itself_is_zero_even_when_singular() -> None:
    a = np.random.default_rng(6).standard_normal((10, 32))  # 10 points in 32-d: rank-deficient covariance
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        frechet_distance(a, a[:, :5])
