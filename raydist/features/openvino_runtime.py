"""The CNN backbone run by OpenVINO on the CPU (``--backbone-runtime openvino``).

Why: on a CPU, OpenVINO's kernels for EfficientNet-Lite0's depthwise convolutions take about half
PyTorch's time for the same float32 maths (2-core AMD EPYC, batches of 8 at 224 px: ~16 -> ~9 ms
per image on one thread, ~9.5 -> ~4.6 ms on two). The graph converted is the whole feature step
(folded backbone, neighbourhood averaging, upsampling, concatenation), so one call returns the grid.

Precision is pinned to float32 (OpenVINO would otherwise pick bfloat16 on CPUs with AVX512-BF16 or
AMX), so grids equal PyTorch's to float32 rounding (tested: rtol 1e-4).

Converting traces the model (~2 s for EfficientNet-Lite0, every scorer, every process), so the
converted model is kept in ``~/.cache/raydist/openvino`` (``RAYDIST_OPENVINO_CACHE`` moves it), keyed
by a hash of the module's architecture, its weights and the torch and OpenVINO versions: a cached
copy is only ever the same conversion. An unwritable cache only costs the conversion.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

from raydist.errors import ConfigError


class OpenVinoGrid:
    """``module`` (images -> grid) converted once and compiled for the CPU with ``threads`` threads.

    Callable like the module; safe to call from several threads (one infer request per thread).
    Input shapes stay dynamic, so one compiled model serves every resolution and batch size.
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int, cache_dir: str | os.PathLike | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise ConfigError("--backbone-runtime openvino needs the openvino package: pip install 'raydist[openvino]'") from None
        core = ov.Core()
        folder = Path(cache_dir or default_cache_dir()) / conversion_key(module, ov.__version__)
        self.from_cache = (folder / "model.xml").is_file()
        if self.from_cache:
            model = core.read_model(folder / "model.xml")
        else:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # OpenVINO's converter traces with it
                model = ov.convert_model(module.eval(), example_input=example)
            _save(ov, model, folder)
        config = {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer([x.detach().cpu().contiguous().numpy()])
        return torch.from_numpy(out.to_tuple()[0].copy())  # the request reuses its output buffer


def default_cache_dir() -> Path:
    return Path(os.environ.get("RAYDIST_OPENVINO_CACHE") or Path.home() / ".cache" / "raydist" / "openvino")


def conversion_key(module: nn.Module, openvino_version: str) -> str:
    """What a conversion depends on: the module's architecture (its repr), every weight and buffer
    (names, shapes, dtypes, bytes), and the torch and OpenVINO versions."""
    h = hashlib.sha256(f"{repr(module)}|torch {torch.__version__}|openvino {openvino_version}".encode())
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def _save(ov, model, folder: Path) -> None:
    """Write the converted model beside, then move it into place in one rename: a reader never
    sees half a model, and of two processes converting at once the first to finish wins."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)  # float32 weights, as converted
        os.rename(tmp, folder)
    except OSError:  # read-only home, a full disk, or another process already moved its copy in
        shutil.rmtree(tmp, ignore_errors=True)
