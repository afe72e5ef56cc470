"""Numerical core: landmark selection, Nyström constructions, SVD baselines and error bounds (pure functions)."""

from .api import (
    BALANCES,
    LowRankFactors,
    NotPSDError,
    RankEstimate,
    nystrom_init,
    paper_slices,
    psd_nystrom,
    rank_for_tolerance,
    register_balance,
)
from .bounds import ERROR_ESTIMATORS, ExactError, RandomizedError, ReferenceErrors, chernoff_tau, reference_errors
from .landmarks import LANDMARK_RULES, Landmarks, register_landmark_rule, select_landmarks
from .methods import (
    METHODS,
    CrossNystrom,
    ExactSVD,
    GeneralizedNystrom,
    GramNystrom,
    OptimalCoreNystrom,
    RandomizedSVD,
    register_method,
)
from .policy import (
    DTypeError,
    NonFiniteError,
    NumericalWarning,
    ParameterError,
    RankError,
    ShapeError,
    UnknownNameError,
)

__all__ = [
    "BALANCES", "LowRankFactors", "NotPSDError", "RankEstimate", "nystrom_init", "paper_slices", "psd_nystrom",
    "rank_for_tolerance", "register_balance", "ERROR_ESTIMATORS", "ExactError", "RandomizedError",
    "ReferenceErrors", "chernoff_tau", "reference_errors", "LANDMARK_RULES", "Landmarks", "register_landmark_rule",
    "select_landmarks", "METHODS", "CrossNystrom", "ExactSVD", "GeneralizedNystrom", "GramNystrom", "OptimalCoreNystrom",
    "RandomizedSVD", "register_method", "DTypeError", "NonFiniteError", "NumericalWarning", "ParameterError",
    "RankError", "ShapeError", "UnknownNameError",
]
