"""Landmark rules: a contract every registered rule passes, plus references for each rule and the Gumbel sampler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from conftest import DTYPES, gen, low_rank, power_law, spectrum_matrix, t64
from nlora_linalg import LANDMARK_RULES, Landmarks, register_landmark_rule, select_landmarks
from nlora_linalg.linalg import kernels

pytestmark = pytest.mark.usefixtures("single_thread")

RULES = tuple(sorted(LANDMARK_RULES))  # the built-in rules, captured before any test registers its own
P_REJECT = 1e-4  # statistical tests reject only below this p-value


def _generic(m: int, n: int, seed: int) -> np.ndarray:
    """A generic full-rank matrix with distinct singular values and distinct row/column norms."""
    return spectrum_matrix(m, n, power_law(min(m, n), 0.7), seed)


def _distinct_rows(idx: torch.Tensor) -> bool:
    flat = idx.reshape(-1, idx.shape[-1])
    return all(len(set(row.tolist())) == flat.shape[-1] for row in flat)


# ---------------------------------------------------------------- contract every rule must pass


@pytest.mark.parametrize("rule", RULES)
class TestLandmarkRuleContract:
    """Contract of the rule signature: counts, ranges, types, batching, determinism under a seed, purity."""

    @pytest.mark.parametrize("m, n, n_rows, n_cols", [(12, 9, 3, 5), (9, 12, 9, 1), (10, 10, 10, 10), (20, 7, 1, 7)])
    def test_indices_distinct_in_range_with_requested_counts(self, rule, m, n, n_rows, n_cols, device):
        """Rows/cols are distinct int64 indices in [0, m) / [0, n) with the requested counts, on W's device."""
        W = t64(_generic(m, n, 0), device)
        lm = select_landmarks(W, n_rows, n_cols, rule=rule, generator=gen(1, device))
        assert isinstance(lm, Landmarks)
        assert lm.rows.shape == (n_rows,) and lm.cols.shape == (n_cols,)
        assert lm.rows.dtype == torch.int64 and lm.cols.dtype == torch.int64
        assert lm.rows.device.type == device and lm.cols.device.type == device
        assert int(lm.rows.min()) >= 0 and int(lm.rows.max()) < m
        assert int(lm.cols.min()) >= 0 and int(lm.cols.max()) < n
        assert _distinct_rows(lm.rows) and _distinct_rows(lm.cols)
        assert lm.row_scores.shape == (m,) and lm.col_scores.shape == (n,)

    def test_batch_shape_preserved(self, rule):
        """A (2, 3, m, n) input gives (2, 3, k) indices and (2, 3, m) / (2, 3, n) scores, distinct per matrix."""
        W = t64(np.stack([_generic(11, 8, s) for s in range(6)]).reshape(2, 3, 11, 8))
        lm = select_landmarks(W, 4, 6, rule=rule, generator=gen(0))
        assert lm.rows.shape == (2, 3, 4) and lm.cols.shape == (2, 3, 6)
        assert lm.row_scores.shape == (2, 3, 11) and lm.col_scores.shape == (2, 3, 8)
        assert _distinct_rows(lm.rows) and _distinct_rows(lm.cols)
        assert int(lm.rows.max()) < 11 and int(lm.cols.max()) < 8 and int(lm.rows.min()) >= 0

    def test_same_seed_same_indices(self, rule):
        """Two calls with generators seeded alike return identical indices and scores."""
        W = t64(_generic(15, 12, 3))
        a = select_landmarks(W, 5, 7, rule=rule, generator=gen(123))
        b = select_landmarks(W, 5, 7, rule=rule, generator=gen(123))
        for x, y in zip(a, b):
            assert torch.equal(x, y)

    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    def test_every_dtype_gives_int64_indices_and_compute_dtype_scores(self, rule, dtype):
        """Every supported dtype works; indices are int64 and scores come in the compute dtype."""
        W = t64(_generic(10, 8, 4)).to(dtype)
        lm = select_landmarks(W, 3, 4, rule=rule, generator=gen(0))
        assert lm.rows.dtype == torch.int64 and lm.cols.dtype == torch.int64
        expected = torch.float64 if dtype == torch.float64 else torch.float32
        assert lm.row_scores.dtype == expected and lm.col_scores.dtype == expected
        assert torch.isfinite(lm.row_scores).all() and torch.isfinite(lm.col_scores).all()
        assert _distinct_rows(lm.rows) and _distinct_rows(lm.cols)

    def test_input_not_mutated(self, rule):
        """Selecting landmarks leaves W bit-for-bit unchanged."""
        W = t64(_generic(9, 7, 5))
        before = W.clone()
        select_landmarks(W, 3, 3, rule=rule, generator=gen(0))
        assert torch.equal(W, before)

    def test_all_indices_on_a_single_entry_matrix_form_a_permutation(self, rule):
        """Asking for every row and column of a matrix with one nonzero entry returns permutations of 0..m−1, 0..n−1."""
        W = torch.zeros(7, 5, dtype=torch.float64)
        W[4, 2] = 3.0
        lm = select_landmarks(W, 7, 5, rule=rule, rank=1, generator=gen(0))
        assert sorted(lm.rows.tolist()) == list(range(7)) and sorted(lm.cols.tolist()) == list(range(5))

    def test_singular_input_stays_finite(self, rule):
        """Zero rows/columns and duplicates give finite scores and valid distinct indices."""
        W = low_rank(10, 8, 2, 0)
        W[3] = 0.0
        W[:, 5] = 0.0
        W[:, 6] = W[:, 1]
        lm = select_landmarks(t64(W), 6, 6, rule=rule, rank=2, generator=gen(0))
        assert torch.isfinite(lm.row_scores).all() and torch.isfinite(lm.col_scores).all()
        assert _distinct_rows(lm.rows) and _distinct_rows(lm.cols)
        assert int(lm.rows.max()) < 10 and int(lm.cols.max()) < 8


# ---------------------------------------------------------------- first / pivoted_qr


def test_first_returns_leading_indices():
    """``first`` returns rows 0..n_rows−1 and columns 0..n_cols−1 for every batch element."""
    W = t64(np.stack([_generic(9, 7, s) for s in range(3)]))
    lm = select_landmarks(W, 4, 6, rule="first")
    assert torch.equal(lm.rows, torch.arange(4).expand(3, 4))
    assert torch.equal(lm.cols, torch.arange(6).expand(3, 6))


def test_pivoted_qr_first_pivot_is_max_norm():
    """The first column (row) pivot is the column (row) of largest Euclidean norm."""
    for seed in range(5):
        W = np.random.default_rng(seed).standard_normal((13, 11))
        lm = select_landmarks(t64(W), 1, 1, rule="pivoted_qr")
        assert int(lm.cols[0]) == int(np.argmax(np.linalg.norm(W, axis=0)))
        assert int(lm.rows[0]) == int(np.argmax(np.linalg.norm(W, axis=1)))


@pytest.mark.parametrize("m, n, k", [(20, 15, 8), (15, 20, 10), (30, 30, 12)])
def test_pivoted_qr_matches_scipy_pivots(m, n, k):
    """Column pivots equal LAPACK geqp3's (scipy.linalg.qr(pivoting=True)) on W, row pivots those on Wᵀ."""
    W = np.random.default_rng(m * n + k).standard_normal((m, n))
    lm = select_landmarks(t64(W), k, k, rule="pivoted_qr")
    _, _, piv_c = scipy.linalg.qr(W, pivoting=True, mode="economic")
    _, _, piv_r = scipy.linalg.qr(W.T, pivoting=True, mode="economic")
    np.testing.assert_array_equal(lm.cols.numpy(), piv_c[:k])
    np.testing.assert_array_equal(lm.rows.numpy(), piv_r[:k])


def test_pivoted_qr_scores_are_squared_norms_and_generator_is_ignored():
    """Scores are the squared column/row norms; pivots do not depend on the generator."""
    W = np.random.default_rng(7).standard_normal((12, 10))
    a = select_landmarks(t64(W), 5, 6, rule="pivoted_qr", generator=gen(0))
    b = select_landmarks(t64(W), 5, 6, rule="pivoted_qr", generator=gen(99))
    np.testing.assert_allclose(a.col_scores.numpy(), (W**2).sum(0), rtol=1e-13)
    np.testing.assert_allclose(a.row_scores.numpy(), (W**2).sum(1), rtol=1e-13)
    assert torch.equal(a.rows, b.rows) and torch.equal(a.cols, b.cols)


def test_pivoted_qr_batch_equals_per_matrix():
    """A batched call gives the same pivots as calling on each matrix alone (deterministic rule)."""
    Ws = [_generic(14, 10, s) for s in range(4)]
    batched = select_landmarks(t64(np.stack(Ws)), 5, 6, rule="pivoted_qr")
    for i, W in enumerate(Ws):
        single = select_landmarks(t64(W), 5, 6, rule="pivoted_qr")
        assert torch.equal(batched.rows[i], single.rows) and torch.equal(batched.cols[i], single.cols)


def test_pivoted_qr_pivots_are_nested():
    """Greedy pivots are nested: the k pivots are a prefix of the k+1 pivots, for every k."""
    W = t64(_generic(16, 12, 11))
    prev = select_landmarks(W, 1, 1, rule="pivoted_qr")
    for k in range(2, 13):
        cur = select_landmarks(W, k, k, rule="pivoted_qr")
        assert torch.equal(cur.cols[: k - 1], prev.cols) and torch.equal(cur.rows[: k - 1], prev.rows)
        prev = cur


def test_adaptive_single_pivot_blocks_are_nested():
    """With block size 1 (k <= 8) the same seed gives nested ``adaptive`` column pivots."""
    W = t64(_generic(16, 12, 12))
    prev = select_landmarks(W, 1, 1, rule="adaptive", generator=gen(5))
    for k in range(2, 9):
        cur = select_landmarks(W, 1, k, rule="adaptive", generator=gen(5))
        assert torch.equal(cur.cols[: k - 1], prev.cols)
        prev = cur


# ---------------------------------------------------------------- uniform


def test_uniform_first_index_is_uniform_over_seeds():
    """Over many seeds the first drawn row / column index is uniform (chi-square goodness of fit)."""
    m, n, trials = 7, 5, 700
    W = t64(_generic(m, n, 0))
    first_rows, first_cols = np.zeros(m), np.zeros(n)
    for seed in range(trials):
        lm = select_landmarks(W, 3, 2, rule="uniform", generator=gen(seed))
        first_rows[int(lm.rows[0])] += 1
        first_cols[int(lm.cols[0])] += 1
    assert scipy.stats.chisquare(first_rows).pvalue >= P_REJECT
    assert scipy.stats.chisquare(first_cols).pvalue >= P_REJECT


def test_uniform_inclusion_probability_is_k_over_n():
    """Each column is included with probability k/n (binomial test per column, Bonferroni-corrected)."""
    n, k, trials = 9, 4, 3000
    W = t64(np.broadcast_to(_generic(6, n, 1), (trials, 6, n)).copy())
    lm = select_landmarks(W, 2, k, rule="uniform", generator=gen(0))  # independent draws per batch element
    counts = np.bincount(lm.cols.reshape(-1).numpy(), minlength=n)
    for c in counts:
        assert scipy.stats.binomtest(int(c), trials, k / n).pvalue >= P_REJECT / n


# ---------------------------------------------------------------- leverage


@pytest.mark.parametrize("k", [1, 3, 6])
def test_leverage_scores_match_numpy(k):
    """``leverage`` scores are the squared row norms of U_k and V_k from numpy's SVD, and each side sums to k."""
    W = _generic(14, 10, k)
    lm = select_landmarks(t64(W), k, k, rule="leverage", rank=k, generator=gen(0))
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(lm.row_scores.numpy(), (U[:, :k] ** 2).sum(1), atol=1e-12)
    np.testing.assert_allclose(lm.col_scores.numpy(), (Vt[:k] ** 2).sum(0), atol=1e-12)
    assert lm.row_scores.sum().item() == pytest.approx(k, abs=1e-12)
    assert lm.col_scores.sum().item() == pytest.approx(k, abs=1e-12)


def test_leverage_sketch_is_exact_on_exact_rank():
    """On an exactly rank-k W the sketched leverage scores equal the exact ones (the sketch captures range(W))."""
    k = 4
    W = low_rank(18, 13, k, 3)
    lm = select_landmarks(t64(W), k, k, rule="leverage_sketch", rank=k, generator=gen(0))
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(lm.row_scores.numpy(), (U[:, :k] ** 2).sum(1), atol=1e-10)
    np.testing.assert_allclose(lm.col_scores.numpy(), (Vt[:k] ** 2).sum(0), atol=1e-10)


# ---------------------------------------------------------------- zero and duplicated columns


def _with_zeros(seed: int) -> tuple[np.ndarray, list[int], list[int]]:
    """12×10 matrix whose columns 2, 5, 7 and rows 0, 4, 9 are zero; the rest is generic (rank 7)."""
    W = np.random.default_rng(seed).standard_normal((12, 10))
    zc, zr = [2, 5, 7], [0, 4, 9]
    W[:, zc] = 0.0
    W[zr] = 0.0
    return W, zr, zc


@pytest.mark.parametrize("rule", ["adaptive", "pivoted_qr", "leverage", "leverage_sketch"])
def test_zero_rows_and_columns_never_picked_while_nonzero_remain(rule):
    """Residual- and leverage-based rules never pick a zero row/column while independent nonzero ones remain."""
    W, zr, zc = _with_zeros(0)
    batch = t64(np.broadcast_to(W, (200, *W.shape)).copy())  # 200 independent draws
    lm = select_landmarks(batch, 7, 7, rule=rule, rank=7, generator=gen(1))
    assert not np.isin(lm.cols.numpy(), zc).any()
    assert not np.isin(lm.rows.numpy(), zr).any()


def _with_duplicate(n_indep: int, seed: int) -> np.ndarray:
    """Generic (n_indep+5)×n_indep matrix plus a copy of its (5× scaled, dominant) column 0 appended as the last column,
    and a copy of its (dominant) row 0 appended as the last row."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_indep + 5, n_indep))
    W[:, 0] *= 5.0
    W = np.concatenate([W, W[:, :1]], axis=1)
    W[0] *= 3.0
    return np.concatenate([W, W[:1]], axis=0)


@pytest.mark.parametrize("rule, k", [("pivoted_qr", 5), ("pivoted_qr", 11), ("adaptive", 5), ("adaptive", 8)])
def test_duplicated_column_never_picked_twice(rule, k):
    """A duplicated column (row) is never picked twice while k <= the number of independent columns (rows)."""
    W = _with_duplicate(11, 2)
    m, n = W.shape
    batch = t64(np.broadcast_to(W, (200, m, n)).copy())
    lm = select_landmarks(batch, k, k, rule=rule, generator=gen(0))
    cols, rows = lm.cols.numpy(), lm.rows.numpy()
    assert not ((cols == 0).any(-1) & (cols == n - 1).any(-1)).any()
    assert not ((rows == 0).any(-1) & (rows == m - 1).any(-1)).any()
    assert (cols == 0).any(-1).mean() + (cols == n - 1).any(-1).mean() > 0.5  # the dominant column is usually taken


# Non-regression (issue #2): blocked adaptive pivots took both copies of a duplicated column.
def test_adaptive_blocked_never_picks_duplicate_twice():
    """With k = 16 (block size 2) ``adaptive`` still never takes both copies of a duplicated column."""
    W = _with_duplicate(20, 2)
    m, n = W.shape
    batch = t64(np.broadcast_to(W, (200, m, n)).copy())
    lm = select_landmarks(batch, 16, 16, rule="adaptive", generator=gen(0))
    cols = lm.cols.numpy()
    assert not ((cols == 0).any(-1) & (cols == n - 1).any(-1)).any()


# ---------------------------------------------------------------- Gumbel-top-k sampler


P_TEST = np.array([0.4, 0.25, 0.15, 0.1, 0.07, 0.03])


def test_gumbel_first_draw_frequency_is_p():
    """The first index drawn by the Gumbel-top-k sampler has probability p_i = s_i / Σ s (chi-square)."""
    B = 20000
    scores = torch.tensor(3.0 * P_TEST).expand(B, -1).contiguous()  # unnormalised scores
    idx = kernels.sample_without_replacement(scores, 2, gen(0))
    counts = np.bincount(idx[:, 0].numpy(), minlength=len(P_TEST))
    assert scipy.stats.chisquare(counts, B * P_TEST).pvalue >= P_REJECT


def test_gumbel_second_draw_is_without_replacement_from_p():
    """The pair (i, j) of the first two draws has probability p_i p_j / (1 − p_i) (sampling without replacement)."""
    B = 20000
    p = P_TEST
    idx = kernels.sample_without_replacement(torch.tensor(p).expand(B, -1).contiguous(), 2, gen(1)).numpy()
    n = len(p)
    expected = np.array([[p[i] * p[j] / (1 - p[i]) if i != j else 0.0 for j in range(n)] for i in range(n)])
    observed = np.zeros((n, n))
    np.add.at(observed, (idx[:, 0], idx[:, 1]), 1)
    off = ~np.eye(n, dtype=bool)
    assert np.all(observed[~off] == 0)
    assert scipy.stats.chisquare(observed[off], B * expected[off]).pvalue >= P_REJECT


def test_gumbel_zero_scores_come_last_and_unavailable_never_drawn():
    """Zero-score entries follow every positive one; entries marked unavailable are never drawn."""
    B = 500
    scores = torch.tensor([0.0, 1e-30, 0.0, 2.0, 0.0, 5.0, 1e-3], dtype=torch.float64).expand(B, -1).contiguous()
    idx = kernels.sample_without_replacement(scores, 7, gen(2)).numpy()
    assert all(set(row[:4]) == {1, 3, 5, 6} for row in idx)
    available = torch.tensor([True, True, True, False, True, True, False]).expand(B, -1)
    idx = kernels.sample_without_replacement(scores, 5, gen(3), available).numpy()
    assert not np.isin(idx, [3, 6]).any()
    assert all(set(row[:2]) == {1, 5} for row in idx)


# ---------------------------------------------------------------- custom rules


def test_registered_rule_is_dispatched_with_compute_dtype_batch():
    """A registered rule receives (b, m, n) in the compute dtype plus (rank, n_rows, n_cols); its output is reshaped."""
    seen = {}

    def fixed(W, rank, n_rows, n_cols, generator):
        seen.update(shape=tuple(W.shape), dtype=W.dtype, rank=rank, n_rows=n_rows, n_cols=n_cols)
        b, m, n = W.shape
        rows = torch.arange(m - n_rows, m).expand(b, n_rows)
        cols = torch.arange(n - n_cols, n).expand(b, n_cols)
        return Landmarks(rows, cols, W.new_ones(b, m), W.new_ones(b, n))

    try:
        assert register_landmark_rule("_test_fixed_tail", fixed) is fixed
        assert LANDMARK_RULES["_test_fixed_tail"] is fixed
        W = t64(_generic(9, 7, 0)).to(torch.float16).expand(2, 9, 7)
        lm = select_landmarks(W, 3, 2, rule="_test_fixed_tail", rank=2, generator=gen(0))
        assert seen == dict(shape=(2, 9, 7), dtype=torch.float32, rank=2, n_rows=3, n_cols=2)
        assert lm.rows.tolist() == [[6, 7, 8]] * 2 and lm.cols.tolist() == [[5, 6]] * 2
    finally:
        LANDMARK_RULES.pop("_test_fixed_tail", None)
