"""Candidates built, scored and timed on a Ray cluster (`simq compile --ray`, `simq worker`).

The driver (`simq compile`) keeps the algorithm, the store, the Pareto set and the report; each
candidate becomes a Ray task on any node: build (prune, quantize, lower), score, size and, with
predicted latency, predict. With measured latency, the built artifact travels (through Ray's
object store, or a shared folder) to a *measuring node*, one that carries the custom resource
named after the target's fingerprint (`measure_resource`; `simq worker --target NAME` starts
one), where a second task times it interleaved with FP32, holding all that node's CPUs so nothing
else runs beside it, one model at a time.
"""

from simq.cluster._ray import RayExecutor, measure_resource
from simq.cluster._transfer import check_share

__all__ = ["RayExecutor", "check_share", "measure_resource"]
