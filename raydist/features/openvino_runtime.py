"""The CNN backbone run by OpenVINO on the CPU (``--backbone-runtime openvino``).

Why: on a CPU, OpenVINO's kernels for EfficientNet-Lite0's depthwise convolutions take about half
PyTorch's time for the same float32 maths (2-core AMD EPYC, batches of 8 at 224 px: ~16 -> ~9 ms
per image on one thread, ~9.5 -> ~4.6 ms on two). The graph converted is the whole feature step
(folded backbone, neighbourhood averaging, upsampling, concatenation), so one call returns the grid.

Precision is pinned to float32 (OpenVINO would otherwise pick bfloat16 on CPUs with AVX512-BF16 or
AMX), so grids equal PyTorch's to float32 rounding (tested: rtol 1e-4).
"""

from __future__ import annotations

import threading
import warnings

import torch
from torch import nn

from raydist.errors import ConfigError


class OpenVinoGrid:
    """``module`` (images -> grid) converted once and compiled for the CPU with ``threads`` threads.

    Callable like the module; safe to call from several threads (one infer request per thread).
    Input shapes stay dynamic, so one compiled model serves every resolution and batch size.
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int):
        try:
            import openvino as ov
        except ImportError:
            raise ConfigError("--backbone-runtime openvino needs the openvino package: pip install 'raydist[openvino]'") from None
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # OpenVINO's converter traces with it
            model = ov.convert_model(module.eval(), example_input=example)
        config = {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer([x.detach().cpu().contiguous().numpy()])
        return torch.from_numpy(out.to_tuple()[0].copy())  # the request reuses its output buffer
