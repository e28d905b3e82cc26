"""Every student as `model.onnx`: input `waveform` (1, samples) float32 at 16 kHz, outputs `hidden_state_<i>`
(1, frames, dim), one per hidden state, with the number of samples (and so of frames) dynamic.

Exported by torch's TorchScript-based exporter (`dynamo=False`): it needs only the `onnx` package, takes about a
second per student and keeps the time axis of the LSTMs dynamic, where torch 2.13's default `torch.export`-based
exporter (which also needs `onnxscript`) took 15-18 s per student here and fixed the LSTM students' input length.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.export.graph import ClipGraph

OPSET = 17
EXPORT_SAMPLES = 16000  # the example clip traced; any length at least the student's shortest input runs after


def output_names(student: torch.nn.Module) -> list[str]:
    """`hidden_state_0` (the transformer or LSTM input) to `hidden_state_<N>` (the last layer)."""
    return [f"hidden_state_{i}" for i in range(student.num_layers)]


def export_onnx(student: torch.nn.Module, path: str | Path) -> Path:
    """Trace the student's one-clip graph into `path` (written under a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    names = output_names(student)
    axes = {"waveform": {1: "samples"}} | {n: {1: "frames"} for n in names}
    example = torch.zeros(1, EXPORT_SAMPLES)
    example[0, ::7] = 0.1  # not silent: the log-mel's floor is relative to the clip's maximum
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns where torch's own modules turn shapes into Python values; the shapes it fixes that way
        # are widths, not lengths (tests run the graph on three lengths); the exporter's deprecation notice is above
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size", category=UserWarning)
        torch.onnx.export(ClipGraph(student).eval(), (example,), str(tmp), dynamo=False, input_names=["waveform"],
                          output_names=names, dynamic_axes=axes, opset_version=OPSET)
    os.replace(tmp, path)
    return path


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_hidden_states(sess, wav: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """All hidden states (frames, dim) of one 1-D 16 kHz clip from an onnxruntime session of model.onnx."""
    audio = np.asarray(wav, dtype=np.float32).reshape(1, -1)
    return [h[0] for h in sess.run(None, {"waveform": audio})]


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_runtime(upstream, onnx_path: str | Path, seconds: float = 8.0, repeats: int = 5) -> dict[str, float]:
    """Real-time factors (compute seconds per audio second, median of `repeats`) on one CPU thread: the student's
    own torch forward (its Upstream) and onnxruntime on model.onnx, on the same seeded clip; and the file size."""
    wav = torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch_s = _median_seconds(lambda: upstream.hidden_states(wav), repeats)
    finally:
        torch.set_num_threads(threads)
    sess = session(onnx_path, threads=1)
    onnx_s = _median_seconds(lambda: onnx_hidden_states(sess, wav), repeats)
    return {"audio_seconds": seconds, "repeats": repeats, "threads": 1, "torch_rtf": torch_s / seconds,
            "onnx_rtf": onnx_s / seconds, "onnx_bytes": Path(onnx_path).stat().st_size}
