"""The 2D encoder every method shares: backbone + preprocessing, built once per process from the config."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from raydist.errors import ConfigError
from raydist.features.backbones import Backbone
from raydist.features.preprocess import Preprocess

CPU_FORWARD_PIXELS = 4 * 224 * 224  # pixels per forward pass on the CPU (see Encoder._images_per_forward)


class Encoder:
    """A frozen backbone and the preprocessing its weights expect (ImageNet normalisation, resize, crop).

    Built once per process (a Ray actor or task, or the local loop) and shared by every detector
    it scores with: the backbone is the heavy part, banks are per class.
    """

    def __init__(self, cfg, device: str | None = None, expect_weights_id: str | None = None, batch_size: int | None = None,
                 runtime: str = "torch"):  # fmt: skip
        self.backbone = Backbone(cfg.backbone, weights=cfg.weights, block=cfg.block, proj_dim=cfg.proj_dim, seed=cfg.seed, device=device,
                                 runtime=runtime)  # fmt: skip
        if expect_weights_id and self.backbone.weights_id != expect_weights_id:
            raise ConfigError(f"backbone weights {self.backbone.weights_id} differ from the model's {expect_weights_id}")
        self.prep: Preprocess = self.backbone.preprocess(cfg.resize, cfg.crop, cfg.aspect)
        self.batch_size = batch_size or self._images_per_forward()  # images per forward pass
        self._clock = threading.local()  # forward-pass seconds per calling thread (worker threads share an encoder)

    def _images_per_forward(self) -> int:
        """8 on accelerators; on the CPU as many as fit CPU_FORWARD_PIXELS, so that a stage's
        activations stay near the caches (EfficientNet-Lite0, one thread, ms per image at 1 / 2 / 4 /
        8 images per pass: 224 x 224 15.6 / 14.3 / 14.7 / 19.8; 560 x 224 36.6 / 41.6 / 53.1 / 59.9;
        two threads at 224 x 224: 4 images 8.5, 8 images 13.0)."""
        if self.device.type != "cpu":
            return 8
        h, w = self.size
        return max(1, CPU_FORWARD_PIXELS // (h * w))

    @property
    def seconds(self) -> float:
        """Seconds the calling thread has spent in forward passes so far (stage timing)."""
        return getattr(self._clock, "seconds", 0.0)

    @property
    def weights_id(self) -> str:
        return self.backbone.weights_id

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every processed image, mask and score map."""
        return self.prep.size

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, H, W, 3) uint8 processed images -> (N, D, h, w) float32 feature grids, in batches."""
        grids = self.extract_on_device(images)
        return grids.cpu().numpy() if len(grids) else np.zeros((0,), np.float32)

    def extract_on_device(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """As :meth:`extract`, left on the encoder's device: a bank search there needs no round trip to the host."""
        t0 = time.perf_counter()
        out = [self.backbone.extract(self.prep.to_tensor(list(images[i : i + self.batch_size])), to_host=False).features
               for i in range(0, len(images), self.batch_size)]  # fmt: skip
        grids = torch.cat(out) if out else torch.zeros((0,), device=self.device)
        self._clock.seconds = self.seconds + time.perf_counter() - t0
        return grids
