"""OpenVINO's MHA kernel: what the attention's form costs SimQ and the NNCF bar. Writes docs/MHA_FORM.md.

OpenVINO's CPU plugin fuses an attention into one MHA kernel when the graph has the form it
matches. Optimum's export (TorchScript, eager attention) and OpenVINO's own PyTorch conversion
(optimum-intel's route) have it; the dynamo export SimQ reads does not (a NaN guard behind each
Softmax, Kᵀ written as a Reshape/Transpose/Reshape chain) until `MhaFormPass` rewrites it. This
times, interleaved in one process on minilm-tweets at the compile job's feed: FP32; NNCF INT8
(transformer preset) on each of the three graphs; OpenVINO's default precision on Optimum's
export; SimQ's all-INT8 model (float parts f32), unpruned and at heads = FFN 75 %, lowered with and
without `MhaFormPass`. Two runs (fresh compiled models), ratios to FP32 and to NNCF INT8 on
Optimum's export, which is the openvino-cpu bar.

Usage: python tools/bench_mha_form.py [--rounds N] [--out docs/MHA_FORM.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, shown_path, table, two_run_rows  # noqa: E402
from bench_lowering import _grid_config  # noqa: E402

from simq.passes.quant import INFERENCE_PRECISION  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import interleave  # noqa: E402
from simq.targets.openvino_cpu._baselines import openvino_baselines  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 5
NNCF = "NNCF INT8 (transformer)"
BAR = f"{NNCF} on Optimum's export (the bar)"


def _nncf_on_pytorch_conversion(job, zoo: Zoo, batches, workdir: Path):
    """NNCF INT8 on OpenVINO's conversion of the PyTorch model (what optimum-intel exports)."""
    import nncf
    import openvino as ov
    import torch

    source = zoo.torch_source("minilm-tweets")

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = source.module

        def forward(self, input_ids, attention_mask):
            return source.logits({"input_ids": input_ids, "attention_mask": attention_mask})

    example = {k: torch.from_numpy(v[:2]) for k, v in batches[0].items()}
    converted = ov.convert_model(Logits().eval(), example_input=example)
    quantized = nncf.quantize(
        converted, nncf.Dataset(list(batches)), model_type=nncf.ModelType.TRANSFORMER,
        subset_size=sum(len(next(iter(b.values()))) for b in batches),
    )  # fmt: skip
    workdir.mkdir(parents=True)
    return job.target.save_native(quantized, workdir, None, job.target.default_precision())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "MHA_FORM.md")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    zoo = Zoo()
    job = prepare_job(JobSpec("zoo:minilm-tweets", target="openvino-cpu"), zoo).job
    batches = [x for x, _ in zoo.data("minilm-tweets", "calibration").batches(16)]
    plain = job.pipeline.replace(lowering=dataclasses.replace(job.pipeline.lowering, fusions=(), notes={}))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def folder(name: str) -> Path:
            path = work / name.replace(" ", "-").replace(",", "").replace("%", "").replace("'", "")
            path.mkdir(parents=True)
            return path

        given = openvino_baselines(job.target, job.model, job.structure, batches[:8])
        models = {
            "FP32": job.target.lower(job.model, folder("fp32")),
            f"{NNCF} on SimQ's dynamo export": given[NNCF](folder("nncf-dynamo")),
            BAR: job.baselines[NNCF](folder("nncf-optimum")),
            f"{NNCF} on OpenVINO's PyTorch conversion": _nncf_on_pytorch_conversion(job, zoo, batches[:8], work / "nncf-pytorch"),
        }
        models |= {f"{name} on Optimum's export": build(folder(name)) for name, build in job.baselines.items() if name.startswith("OpenVINO default")}
        for width in (1.0, 0.75):
            config = _grid_config(job.pipeline, width, width, 0) | {INFERENCE_PRECISION: "fp32"}
            shape = "unpruned" if width == 1.0 else f"heads = FFN {width:.0%}"
            for label, pipeline in ((f"SimQ INT8 {shape}, exporter's attention", plain), (f"SimQ INT8 {shape}, MhaFormPass", job.pipeline)):
                models[label] = job.target.lower(pipeline.build(config), folder(label))
        runs = []
        for run in range(2):
            print(f"run {run + 1}", file=sys.stderr, flush=True)
            calls = {label: job.target.runner(artifact, job.feed) for label, artifact in models.items()}
            runs.append(interleave(calls, rounds=args.rounds, per_round=PER_ROUND, rewarm=3))
    rows = two_run_rows(models, runs, ("FP32", BAR), PER_ROUND)
    shape = "x".join(map(str, next(iter(job.feed.values())).shape))
    out_flag = "" if args.out.resolve() == ROOT / "docs" / "MHA_FORM.md" else f" --out {shown_path(args.out)}"
    doc = f"""# OpenVINO's MHA kernel: the attention's form, for SimQ and for the NNCF bar

Generated by `python tools/bench_mha_form.py --rounds {args.rounds}{out_flag}` on {cpu_name()}
(fingerprint `{job.target.fingerprint().key()}`), 2 threads, batch 1, minilm-tweets, the compile
job's feed ({shape}, the test split's first example). Every model interleaved in one process
({args.rounds} rounds of {PER_ROUND} timed calls, 3 re-warm calls after each switch); the median of
per-round ratios with its distribution-free 95 % interval, then the median of a second run in turn
(fresh compiled models). Baselines at OpenVINO's default precision for this CPU; SimQ's models
every unit INT8 (static, as openvino-cpu lowers it) with float parts f32. Latency only.

OpenVINO's CPU plugin fuses `MatMul(Q, Kᵀ) → Add mask → Softmax → MatMul(·, V)` with its
Transposes and FakeQuantizes into one MHA kernel when it compiles. The dynamo export SimQ reads
puts a NaN guard (`Where(IsNaN(p), 0, p)`) behind each Softmax and writes Kᵀ as a
Reshape/Transpose/Reshape chain, and the plugin then runs the pieces one by one; `MhaFormPass`
(openvino-cpu's lowering) rewrites both. Optimum's export and OpenVINO's PyTorch conversion
already have the fused form, so NNCF on them is what OpenVINO users get: the openvino-cpu bar is
NNCF INT8 on Optimum's export (built from the model's PyTorch source where there is one).

{table(['model', 'ms', '× FP32 [95 %] / run 2', f'× {BAR} [95 %] / run 2'], rows)}
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
