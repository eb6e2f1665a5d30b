#!/usr/bin/env python3
"""ONNX Runtime's column of `make bench`, inference only: one measurement per call, one JSON line, like
bench_torch.py, so the Swift driver can alternate it with the other systems.

  bench_onnxruntime.py [--threads N] [--batch N] [--steps N]
  bench_onnxruntime.py --prepare      (exit 0 when onnxruntime and onnx import; exports the model if needed)

The model is the inference case's: torchvision's resnet50 with fc = Identity (random weights, seed 0; the
weights do not change the cost), fp32, batch 8, 224x224. It is exported to ONNX once and cached under
.cache/bench/ in the repository (git-ignored), so a measurement pays only for loading it. The session runs
with --threads intra-op threads, one inter-op thread and every graph optimization, and is timed with
bench_torch.py's protocol: one warm-up run, then --steps runs.

ONNX Runtime's CPU kernels (MLAS) choose their instruction set from cpuid when the library loads; nothing
at run time caps them at AVX2, so in the driver's AVX2 setup this column is not restricted.
Needs torch, torchvision (for the export), onnx and onnxruntime: `pip install onnxruntime onnx`.
CI never runs it.
"""
import argparse
import json
import os
import sys
import warnings

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cached_model_path(batch):
    """The exported backbone for `batch`, exported on first use. The file is written under a temporary
    name and renamed, so a run interrupted mid-export never leaves a truncated model behind."""
    path = os.path.join(REPOSITORY, ".cache", "bench", f"resnet50-fc-identity-batch{batch}-fp32.onnx")
    if os.path.exists(path):
        return path
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    model.eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    # The TorchScript exporter (dynamo=False) needs only the onnx package, not onnxscript; its graph of a
    # ResNet is the plain Conv/Relu/Add one that ONNX Runtime fuses.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the notice that dynamo=True is the default now
        torch.onnx.export(model, (torch.randn(batch, 3, 224, 224),), partial, dynamo=False,
                          input_names=["images"], output_names=["features"], opset_version=17)
    os.replace(partial, path)
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prepare", action="store_true",
                        help="only check that onnxruntime and onnx import and export the model if it is not cached")
    # The driver passes every system the same flags; these do not apply to an inference-only column.
    parser.add_argument("--case", default="inference")
    parser.add_argument("--jpeg", default=None)
    args = parser.parse_args()

    try:
        import numpy
        import onnx  # noqa: F401  (the export needs it; failing here is clearer than failing inside torch)
        import onnxruntime
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_torch import images_per_second  # the same timing protocol as PyTorch's side
    except ImportError as error:
        sys.exit(f"bench_onnxruntime.py: {error}")

    if args.prepare:
        cached_model_path(args.batch)
        print(json.dumps({"onnxruntime_available": 1}))
        return
    if args.case != "inference":
        sys.exit(f"bench_onnxruntime.py: only the inference case, not {args.case}")

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(cached_model_path(args.batch), options,
                                           providers=["CPUExecutionProvider"])
    images = numpy.random.default_rng(0).standard_normal((args.batch, 3, 224, 224), dtype=numpy.float32)

    def step():
        session.run(None, {"images": images})

    rate = images_per_second(step, args.batch, args.steps)
    print(json.dumps({"case": "inference", "images_per_second": rate}))


if __name__ == "__main__":
    main()
