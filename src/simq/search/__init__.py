"""The search driver: the space, the algorithms (random, NSGA-II, LINAS), the result store,
Pareto extraction and the report; `compile_model` puts them together."""

from simq.search._algorithms import ALGORITHMS, Algorithm, Goal
from simq.search._baselines import cached_baselines
from simq.search._compile import Progress, compile_model
from simq.search._costmodel import train_cost_model
from simq.search._evaluate import Evaluation, Executor, InProcessExecutor, ModelEvaluator, first_line
from simq.search._examples import ZooLike, examples_for
from simq.search._job import PreparedJob, check_spec, prepare_job
from simq.search._objectives import OBJECTIVES, Objective, References, accuracy_drop, metric
from simq.search._options import CompileOptions, CompileResult, Job, JobSpec
from simq.search._out import check_out, make_out
from simq.search._pareto import hypervolume, pareto_front
from simq.search._published import Predictor, Published, load_published
from simq.search._report import SPEEDUP_HEADER, SUMMARY_FILE, describe, display_table, headline, hypervolume_curve
from simq.search._scoring import resolution_note
from simq.search._space import SearchSpace
from simq.search._store import Record, Store, config_key

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "OBJECTIVES",
    "SPEEDUP_HEADER",
    "SUMMARY_FILE",
    "CompileOptions",
    "CompileResult",
    "Evaluation",
    "Executor",
    "Goal",
    "InProcessExecutor",
    "ModelEvaluator",
    "Job",
    "JobSpec",
    "Objective",
    "Predictor",
    "PreparedJob",
    "Published",
    "Progress",
    "References",
    "Record",
    "SearchSpace",
    "Store",
    "ZooLike",
    "accuracy_drop",
    "cached_baselines",
    "check_out",
    "check_spec",
    "compile_model",
    "config_key",
    "describe",
    "display_table",
    "examples_for",
    "first_line",
    "headline",
    "hypervolume",
    "hypervolume_curve",
    "load_published",
    "make_out",
    "metric",
    "pareto_front",
    "prepare_job",
    "resolution_note",
    "train_cost_model",
]
