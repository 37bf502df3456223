"""A tiny per-voxel segmenter that the plug-in tests build themselves (numpy and scipy only).

It stands in for a deep model whose weights are on disk: :func:`fit_tiny_model` fits one
logistic regression per structure (Newton's method, L2-regularised) on per-voxel features of a
labelled CT, :func:`save_weights` writes them to an ``.npz`` file, and :class:`TinySegmenter`
(the object the test's entry point names) reads them from the path in the environment variable
:data:`WEIGHTS_ENV`, as nnU-Net reads ``nnUNet_results``.

Features of a voxel: its HU, its HU smoothed with Gaussians of σ = 2 and 6 mm, their squares,
and its position in the grid (scaled to [-1, 1]) with the quadratic terms of it. The position
terms make it an atlas of one phantom's layout: it only fits CTs laid out like the one it was
trained on. That is enough for a test of the plug-in interface; it is not a segmentation method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from cardiotwin.imaging.plugins import PluginStatus
from cardiotwin.imaging.volume import LabelMap, Volume

WEIGHTS_ENV = "CARDIOTWIN_TINY_WEIGHTS"
#: the model's own label values (not cardiotwin's: the plug-in maps names, not numbers)
OWN_VALUES = {"background": 0, "aorta": 7, "myocardium": 9}


def voxel_features(ct: Volume) -> np.ndarray:
    """Per-voxel features ``(n_voxels, 14)`` of a CT (see the module docstring)."""
    a = np.asarray(ct.array, dtype=np.float32) / 1000.0
    sp = np.asarray(ct.spacing_mm[::-1])
    s2 = ndi.gaussian_filter(a, 2.0 / sp)
    s6 = ndi.gaussian_filter(a, 6.0 / sp)
    grid = np.indices(a.shape, dtype=np.float32)
    pos = [grid[d] / max(a.shape[d] - 1, 1) * 2.0 - 1.0 for d in range(3)]
    quad = [pos[0] * pos[0], pos[1] * pos[1], pos[2] * pos[2],
            pos[0] * pos[1], pos[0] * pos[2], pos[1] * pos[2]]
    return np.stack([f.ravel() for f in (a, s2, s6, a * a, s2 * s2, *pos, *quad)], axis=1)


def _logistic(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_tiny_model(ct: Volume, truth: LabelMap, structures: Mapping[str, tuple[str, ...]], *,
                   n_samples: int = 60_000, iterations: int = 30, l2: float = 1e-3,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Fit one logistic regression per structure on ``n_samples`` random voxels.

    ``structures`` maps each structure the model will provide to the truth labels that make it
    up (``{"aorta": ("aorta", "branches")}``). Returns the arrays :func:`save_weights` writes.
    """
    x = voxel_features(ct)
    idx = np.random.default_rng(seed).choice(len(x), size=min(n_samples, len(x)), replace=False)
    xs = x[idx].astype(np.float64)
    mean, sd = xs.mean(axis=0), xs.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(xs), 1)), (xs - mean) / sd])
    weights = []
    for labels in structures.values():
        y = truth.mask(*labels).ravel()[idx].astype(np.float64)
        w = np.zeros(z.shape[1])
        for _ in range(iterations):  # Newton / IRLS: a few steps converge
            p = _logistic(z @ w)
            grad = z.T @ (p - y) + l2 * w
            hess = (z * (p * (1.0 - p))[:, None]).T @ z + l2 * np.eye(len(w))
            w -= np.linalg.solve(hess, grad)
        weights.append(w)
    return {"structures": np.array(list(structures)), "mean": mean, "sd": sd,
            "weights": np.array(weights)}


def save_weights(path: Path, model: Mapping[str, np.ndarray]) -> Path:
    """Write the model's arrays to ``path`` (``.npz``)."""
    np.savez(path, **model)
    return path


class TinySegmenter:
    """The plug-in: aorta and myocardium from the weights at ``$CARDIOTWIN_TINY_WEIGHTS``."""

    name = "tiny"
    structures = ("aorta", "myocardium")

    def __init__(self, weights: str | Path | None = None) -> None:
        given = weights if weights is not None else os.environ.get(WEIGHTS_ENV, "")
        self.weights = Path(given) if given else None

    def check(self) -> PluginStatus:
        if self.weights is None:
            return PluginStatus(False, f"no weights configured; set {WEIGHTS_ENV} to the .npz "
                                "file that fit_tiny_model + save_weights wrote")
        if not self.weights.is_file():
            return PluginStatus(False, f"weights not found at {self.weights}; build them with "
                                f"fit_tiny_model + save_weights, or point {WEIGHTS_ENV} at them")
        return PluginStatus(True, f"weights {self.weights}")

    def segment(self, ct: Volume) -> LabelMap:
        with np.load(self.weights) as f:
            names = [str(s) for s in f["structures"]]
            mean, sd, weights = f["mean"], f["sd"], f["weights"]
        x = (voxel_features(ct) - mean) / sd
        scores = x @ weights[:, 1:].T + weights[:, 0]  # (n_voxels, n_structures) log-odds
        best = np.argmax(scores, axis=1)
        out = np.zeros(len(x), dtype=np.uint8)
        hit = scores[np.arange(len(x)), best] > 0.0  # probability > 0.5
        values = np.array([OWN_VALUES[n] for n in names], dtype=np.uint8)
        out[hit] = values[best[hit]]
        return LabelMap(ct.with_array(out.reshape(ct.shape)),
                        {"background": 0, **{n: OWN_VALUES[n] for n in names}})


class FailingSegmenter:
    """A plug-in that is available but fails inside ``segment`` (as a model out of memory)."""

    name = "failing"
    structures = ("aorta",)

    def check(self) -> PluginStatus:
        return PluginStatus(True)

    def segment(self, ct: Volume) -> LabelMap:
        raise RuntimeError("CUDA out of memory (simulated)")
