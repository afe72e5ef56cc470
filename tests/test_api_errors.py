"""Bad input: every public entry point and config raises the documented exception class with a message that names
the argument and the offending value (house format ``"<arg>: <rule>; got <value>"``)."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import CUDA, gen, spectrum_matrix, t64
from nlora_linalg import (
    BALANCES,
    ERROR_ESTIMATORS,
    LANDMARK_RULES,
    METHODS,
    CrossNystrom,
    DTypeError,
    GeneralizedNystrom,
    GramNystrom,
    NonFiniteError,
    NotPSDError,
    NumericalWarning,
    OptimalCoreNystrom,
    ParameterError,
    RandomizedError,
    RandomizedSVD,
    RankError,
    ShapeError,
    UnknownNameError,
    nystrom_init,
    paper_slices,
    psd_nystrom,
    rank_for_tolerance,
    reference_errors,
    register_balance,
    register_landmark_rule,
    register_method,
    select_landmarks,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _W(m: int = 6, n: int = 4, dtype=torch.float64) -> torch.Tensor:
    return t64(spectrum_matrix(m, n, np.linspace(2.0, 1.0, min(m, n)), 0)).to(dtype)


@contextlib.contextmanager
def raises(cls: type[Exception], arg: str, got: str):
    """Assert the body raises exactly ``cls`` with a message naming ``arg`` and containing ``got <got>``."""
    with pytest.raises(Exception) as info:
        yield info
    msg = str(info.value)
    assert info.type is cls, f"expected exactly {cls.__name__}, got {info.type.__name__}: {msg}"
    assert arg in msg, f"message does not name {arg!r}: {msg}"
    assert f"got {got}" in msg, f"message does not show the value {got!r}: {msg}"


# ---------------------------------------------------------------- the exception hierarchy


def test_exception_hierarchy():
    """Parameter errors are ValueErrors, dtype errors TypeErrors, NotPSDError a ParameterError (STYLE §5)."""
    for cls in (ShapeError, RankError, NonFiniteError, UnknownNameError, NotPSDError):
        assert issubclass(cls, ParameterError) and issubclass(cls, ValueError)
    assert issubclass(DTypeError, TypeError) and not issubclass(DTypeError, ValueError)
    assert issubclass(NumericalWarning, UserWarning)


# ---------------------------------------------------------------- W: finiteness, dtype, shape, type


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda W: nystrom_init(W, rank=2), id="nystrom_init"),
        pytest.param(lambda W: select_landmarks(W, 2), id="select_landmarks"),
        pytest.param(lambda W: rank_for_tolerance(W, 0.1), id="rank_for_tolerance"),
        pytest.param(lambda W: paper_slices(W, 2), id="paper_slices"),
    ],
)
def test_non_finite_w(call, bad):
    """NaN/Inf anywhere in W raises NonFiniteError naming W, the count and the shape."""
    W = _W().clone()
    W[2, 1] = bad
    with raises(NonFiniteError, "W", "1 NaN/Inf entries in shape (6, 4)"):
        call(W)


def test_non_finite_psd_input_and_factors():
    """psd_nystrom names its argument A; reference_errors names the offending factor."""
    A = torch.eye(5, dtype=torch.float64)
    A[0, 0] = math.nan
    with raises(NonFiniteError, "A", "1 NaN/Inf entries in shape (5, 5)"):
        psd_nystrom(A, 2)
    W = _W()
    f64 = dict(dtype=torch.float64)
    B, N, Af = torch.ones(6, 2, **f64), torch.eye(2, **f64), torch.ones(2, 4, **f64)
    N[1, 1] = math.inf
    with raises(NonFiniteError, "N", "1 NaN/Inf entries in shape (2, 2)"):
        reference_errors(W, B, N, Af)


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64, torch.complex128], ids=str
)
def test_unsupported_dtype(dtype):
    """Integer, bool and complex W raise DTypeError naming W, the dtype received and the supported ones."""
    W = torch.ones(6, 4, dtype=dtype)
    name = str(dtype).replace("torch.", "")
    for call in (lambda: nystrom_init(W, rank=2), lambda: select_landmarks(W, 2), lambda: rank_for_tolerance(W, 0.1)):
        with raises(DTypeError, "W", name) as info:
            call()
        for ok in ("float16", "bfloat16", "float32", "float64"):
            assert ok in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [(), (5,), (0, 5), (5, 0), (2, 0, 3), (0, 3, 3)],
    ids=["0d", "1d", "empty_rows", "empty_cols", "empty_m_batched", "empty_batch"],
)
def test_bad_shape(shape):
    """0-D, 1-D and empty-dimension W raise ShapeError naming W and the shape received."""
    W = torch.ones(shape, dtype=torch.float64)
    with raises(ShapeError, "W", str(tuple(shape))):
        nystrom_init(W, rank=1)
    with raises(ShapeError, "W", str(tuple(shape))):
        select_landmarks(W, 1)


@pytest.mark.parametrize("W", [[[1.0, 2.0], [3.0, 4.0]], np.eye(3), 3.0], ids=["list", "ndarray", "float"])
def test_non_tensor_w(W):
    """A non-tensor W raises TypeError naming W and the type received."""
    with raises(TypeError, "W", type(W).__name__):
        nystrom_init(W, rank=1)


# ---------------------------------------------------------------- rank, landmarks, tol


@pytest.mark.parametrize("rank", [0, -1, 5])
def test_rank_out_of_range(rank):
    """rank outside [1, min(m, n)] = [1, 4] raises RankError naming rank and the value (all entry points)."""
    W = _W()
    with raises(RankError, "rank", str(rank)):
        nystrom_init(W, rank=rank)
    with raises(RankError, "rank", str(rank)):
        paper_slices(W, rank)
    with raises(RankError, "rank", str(rank if rank != 5 else 7)):
        psd_nystrom(torch.eye(6, dtype=torch.float64), rank if rank != 5 else 7)


@pytest.mark.parametrize("rank", [2.0, True, "2"], ids=["float", "bool", "str"])
def test_rank_not_an_int(rank):
    """A non-int rank (float, bool, str) raises TypeError naming rank."""
    with raises(TypeError, "rank", repr(rank)):
        nystrom_init(_W(), rank=rank)


@pytest.mark.parametrize("config", [CrossNystrom, OptimalCoreNystrom], ids=lambda c: c.__name__)
def test_fewer_landmarks_than_rank(config):
    """n_landmarks < rank raises RankError naming n_landmarks and the counts received."""
    with raises(RankError, "n_landmarks", "3 rows, 3 columns"):
        nystrom_init(_W(12, 10), rank=5, method=config(n_landmarks=3))


@pytest.mark.parametrize("config", [CrossNystrom, OptimalCoreNystrom], ids=lambda c: c.__name__)
def test_more_landmarks_than_fit(config):
    """n_landmarks larger than W's columns raises RankError naming n_landmarks."""
    with raises(RankError, "n_landmarks", "11 rows, 11 columns"):
        nystrom_init(_W(12, 10), rank=5, method=config(n_landmarks=11))


@pytest.mark.parametrize("arg, kwargs, got", [
    ("n_rows", dict(n_rows=0), "0"),
    ("n_rows", dict(n_rows=7), "7"),
    ("n_cols", dict(n_rows=2, n_cols=0), "0"),
    ("n_cols", dict(n_rows=2, n_cols=5), "5"),
    ("rank", dict(n_rows=2, rank=5), "5"),
])
def test_select_landmarks_counts_out_of_range(arg, kwargs, got):
    """select_landmarks rejects counts outside [1, m] / [1, n] and rank outside [1, min(m, n)] with RankError."""
    with raises(RankError, arg, got):
        select_landmarks(_W(), **kwargs)


@pytest.mark.parametrize("tol", [0, 1, -0.5, math.nan, math.inf, 1.5, True], ids=str)
def test_tol_outside_open_unit_interval(tol):
    """tol not in (0, 1) raises ParameterError naming tol and the value (nystrom_init and rank_for_tolerance)."""
    with raises(ParameterError, "tol", repr(tol)):
        nystrom_init(_W(), tol=tol)
    with raises(ParameterError, "tol", repr(tol)):
        rank_for_tolerance(_W(), tol)


@pytest.mark.parametrize("rank, tol", [(None, None), (2, 0.1)], ids=["neither", "both"])
def test_exactly_one_of_rank_and_tol(rank, tol):
    """Passing both or neither of rank and tol raises ParameterError showing both values."""
    with raises(ParameterError, "rank, tol", f"rank={rank!r}, tol={tol!r}"):
        nystrom_init(_W(), rank=rank, tol=tol)


def test_rank_for_tolerance_bad_block():
    """block < 1 raises ParameterError naming block."""
    with raises(ParameterError, "block", "0"):
        rank_for_tolerance(_W(), 0.1, block=0)


# ---------------------------------------------------------------- registry names


@pytest.mark.parametrize(
    "arg, registry, call",
    [
        ("method", METHODS, lambda W: nystrom_init(W, rank=2, method="nope")),
        ("balance", BALANCES, lambda W: nystrom_init(W, rank=2, balance="nope")),
        ("error", ERROR_ESTIMATORS, lambda W: nystrom_init(W, rank=2, error="nope")),
        ("rule", LANDMARK_RULES, lambda W: select_landmarks(W, 2, rule="nope")),
        ("landmarks", LANDMARK_RULES, lambda W: CrossNystrom(landmarks="nope")),
        ("landmarks", LANDMARK_RULES, lambda W: OptimalCoreNystrom(landmarks="nope")),
        ("sketch", LANDMARK_RULES, lambda W: GramNystrom(sketch="nope")),
        ("error", ERROR_ESTIMATORS, lambda W: psd_nystrom(torch.eye(4, dtype=torch.float64), 2, error="nope")),
    ],
    ids=["method", "balance", "error", "rule", "cross-landmarks", "optimal_core-landmarks", "gram-sketch", "psd-error"],
)
def test_unknown_names_list_the_known_ones(arg, registry, call):
    """An unknown registry name raises UnknownNameError naming the argument, the value and every known name."""
    with raises(UnknownNameError, arg, "'nope'") as info:
        call(_W())
    for name in registry:
        assert repr(name) in str(info.value) or name in str(info.value)


def test_method_of_wrong_type():
    """A method that is neither a name nor a config raises ParameterError naming method."""
    with raises(ParameterError, "method", "42"):
        nystrom_init(_W(), rank=2, method=42)


def test_register_rejects_bad_names_and_configs():
    """Registering under an empty name raises ParameterError; a config lacking ``build`` raises TypeError."""
    with raises(ParameterError, "name", "''"):
        register_landmark_rule("", lambda *a: None)
    with raises(ParameterError, "name", "''"):
        register_balance("", lambda *a: None)
    with raises(TypeError, "config", "object"):
        register_method("_test_bad", object())
    assert "_test_bad" not in METHODS


# ---------------------------------------------------------------- generator


def test_generator_of_wrong_type():
    """A seed passed as generator raises TypeError naming generator."""
    with raises(TypeError, "generator", "int"):
        nystrom_init(_W(), rank=2, generator=0)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_generator_on_another_device_type():
    """A CPU generator for a CUDA W raises ParameterError naming generator and its device."""
    with raises(ParameterError, "generator", "cpu"):
        nystrom_init(_W().cuda(), rank=2, generator=gen(0))


# ---------------------------------------------------------------- configs validate at construction


@pytest.mark.parametrize(
    "factory, arg, got",
    [
        (lambda: GramNystrom(power_iters=-1), "power_iters", "-1"),
        (lambda: GramNystrom(power_iters=1.5), "power_iters", "1.5"),
        (lambda: GramNystrom(oversample=-2), "oversample", "-2"),
        (lambda: GeneralizedNystrom(co_ratio=0.5), "co_ratio", "0.5"),
        (lambda: GeneralizedNystrom(co_ratio=math.nan), "co_ratio", "nan"),
        (lambda: GeneralizedNystrom(rcond=1.0), "rcond", "1.0"),
        (lambda: CrossNystrom(row_ratio=0.5), "row_ratio", "0.5"),
        (lambda: CrossNystrom(rcond=-0.1), "rcond", "-0.1"),
        (lambda: CrossNystrom(n_landmarks=-1), "n_landmarks", "-1"),
        (lambda: OptimalCoreNystrom(row_ratio=0.0), "row_ratio", "0.0"),
        (lambda: RandomizedSVD(oversample=-1), "oversample", "-1"),
        (lambda: RandomizedError(probes=0), "probes", "0"),
        (lambda: RandomizedError(probes=True), "probes", "True"),
        (lambda: RandomizedError(delta=1.5), "delta", "1.5"),
        (lambda: RandomizedError(delta=0.0), "delta", "0.0"),
        (lambda: RandomizedError(delta=1), "delta", "1"),
        (lambda: RandomizedError(delta=math.nan), "delta", "nan"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_config_raises_at_construction(factory, arg, got):
    """Invalid config fields raise ParameterError when the config is built, naming the field and the value."""
    with raises(ParameterError, arg, got):
        factory()


@pytest.mark.parametrize("config", [GramNystrom(), CrossNystrom(), RandomizedError()], ids=lambda c: type(c).__name__)
def test_configs_are_frozen(config):
    """Configs are frozen dataclasses: assigning a field raises FrozenInstanceError."""
    field = dataclasses.fields(config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, getattr(config, field))


# ---------------------------------------------------------------- psd_nystrom and reference_errors


def test_psd_nystrom_non_square():
    """A non-square A raises ShapeError naming A and its shape."""
    with raises(ShapeError, "A", "(4, 5)"):
        psd_nystrom(torch.ones(4, 5, dtype=torch.float64), 2)


def test_psd_nystrom_non_symmetric():
    """A non-symmetric A raises NotPSDError naming A and the relative asymmetry."""
    A = torch.eye(6, dtype=torch.float64)
    A[0, 5] = 1.0
    with raises(NotPSDError, "A", "relative asymmetry"):
        psd_nystrom(A, 2, generator=gen(0))


def test_psd_nystrom_indefinite_warns_then_raises():
    """A symmetric negative-definite A warns (NumericalWarning, shift raised) and then raises NotPSDError."""
    X = np.random.default_rng(0).standard_normal((8, 8))
    with pytest.warns(NumericalWarning, match="shift raised"):
        with raises(NotPSDError, "A", "final shift"):
            psd_nystrom(t64(-(X @ X.T)), 3, generator=gen(0))


@pytest.mark.parametrize(
    "kwargs, arg, got", [(dict(shift=-1.0), "shift", "-1.0"), (dict(oversample=-1), "oversample", "-1")]
)
def test_psd_nystrom_bad_parameters(kwargs, arg, got):
    """A negative shift or oversample raises ParameterError naming the parameter."""
    with raises(ParameterError, arg, got):
        psd_nystrom(torch.eye(5, dtype=torch.float64), 2, **kwargs)


def test_reference_errors_shape_mismatch():
    """Factors whose shapes do not fit W raise ParameterError listing the shapes received."""
    W = _W()
    f64 = dict(dtype=torch.float64)
    B, N, A = torch.ones(6, 2, **f64), torch.eye(3, **f64), torch.ones(2, 4, **f64)
    with raises(ParameterError, "B, N, A", "(6, 2), (3, 3), (2, 4)"):
        reference_errors(W, B, N, A)


@pytest.mark.parametrize("register_fn", ["register_landmark_rule", "register_balance", "register_method", "register_init"])
def test_registries_reject_bad_names_and_incomplete_configs(register_fn):
    """Every register_* shares one mechanism: an empty name is a ParameterError naming 'name'; method and init
    configs missing a required attribute are a TypeError naming it; nothing is registered on failure."""
    import nlora_linalg

    fn = getattr(nlora_linalg, register_fn)
    with pytest.raises(ParameterError, match="name"):
        fn("", object())
    if register_fn in ("register_method", "register_init"):
        registry = nlora_linalg.METHODS if register_fn == "register_method" else nlora_linalg.INITS
        with pytest.raises(TypeError, match="build"):
            fn("incomplete", object())
        assert "incomplete" not in registry
