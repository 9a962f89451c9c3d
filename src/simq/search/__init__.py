"""The search driver: the space, the algorithms (random, NSGA-II, LINAS), the result store,
Pareto extraction and the report; `compile_model` puts them together."""

from simq.search._algorithms import ALGORITHMS, Goal
from simq.search._baselines import cached_baselines
from simq.search._compile import OBJECTIVES, CompileOptions, CompileResult, Job, compile_model, minimised
from simq.search._costmodel import train_cost_model
from simq.search._pareto import hypervolume, pareto_front
from simq.search._report import describe, headline, hypervolume_curve
from simq.search._space import SearchSpace
from simq.search._store import Record, Store, config_key

__all__ = [
    "ALGORITHMS",
    "OBJECTIVES",
    "CompileOptions",
    "CompileResult",
    "Goal",
    "Job",
    "Record",
    "SearchSpace",
    "Store",
    "cached_baselines",
    "compile_model",
    "config_key",
    "describe",
    "headline",
    "hypervolume",
    "hypervolume_curve",
    "minimised",
    "pareto_front",
    "train_cost_model",
]
