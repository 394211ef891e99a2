"""Plaintext robust aggregators, as references for fednode's rule: they see every update in the clear,
which no node of a secure-aggregation consortium does, so they bound what a rule on revealed statistics
could hope for rather than being options for the consortium.

Each takes the round's updates (k, d) and their sample counts and returns the aggregate update and the
indices it kept (all of them for the trimmed mean, which drops coordinates, not updates).
"""

from __future__ import annotations

import numpy as np

from ml.robust import multi_krum


def _pairwise_sq_dists(updates: np.ndarray) -> np.ndarray:
    sq_norms = (updates**2).sum(axis=1)
    d = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * updates @ updates.T, 0.0)
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    return d


def _weighted_mean(updates: np.ndarray, weights: np.ndarray, kept: np.ndarray) -> np.ndarray:
    w = weights[kept]
    return (updates[kept] * w[:, None]).sum(axis=0) / w.sum()


def fedavg_reference(updates: np.ndarray, weights: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain FedAvg: every update, weighted by sample count."""
    kept = np.arange(len(updates))
    return _weighted_mean(updates, weights, kept), kept


def multi_krum_reference(updates: np.ndarray, weights: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-Krum (Blanchard et al. 2017): the n - f updates with the lowest Krum scores, averaged."""
    kept = multi_krum(_pairwise_sq_dists(updates), f, len(updates) - f)
    return _weighted_mean(updates, weights, kept), kept


def trimmed_mean_reference(updates: np.ndarray, weights: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate-wise trimmed mean (Yin et al. 2018): drop the f largest and f smallest values of
    each coordinate, average the rest (unweighted, as in the paper)."""
    ordered = np.sort(updates, axis=0)
    return ordered[f: len(updates) - f].mean(axis=0), np.arange(len(updates))


def flame_reference(updates: np.ndarray, weights: np.ndarray, f: int, noise_lambda: float = 0.001,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FLAME (Nguyen et al., USENIX Security 2022): HDBSCAN on cosine distances with a minimum cluster
    of n/2 + 1 keeps the majority cluster, the kept updates are clipped to the median norm of all
    updates and averaged, and Gaussian noise of standard deviation ``noise_lambda`` times that median
    is added (the paper's lambda for image classification)."""
    from sklearn.cluster import HDBSCAN

    norms = np.sqrt((updates**2).sum(axis=1))
    unit = updates / np.maximum(norms, 1e-12)[:, None]
    cosine_distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(cosine_distance, 0.0)
    n = len(updates)
    labels = HDBSCAN(min_cluster_size=n // 2 + 1, min_samples=1, metric="precomputed", copy=True,
                     allow_single_cluster=True).fit(cosine_distance).labels_
    clusters = [label for label in set(labels.tolist()) if label >= 0]
    if clusters:
        majority = max(clusters, key=lambda label: (int((labels == label).sum()), -label))
        kept = np.flatnonzero(labels == majority)
    else:
        kept = np.arange(n)
    bound = float(np.median(norms))
    clipped = updates[kept] * np.minimum(1.0, bound / np.maximum(norms[kept], 1e-12))[:, None]
    noise = np.random.default_rng(seed).normal(0.0, noise_lambda * bound, size=updates.shape[1])
    return clipped.mean(axis=0) + noise, kept


REFERENCES = {"fedavg": fedavg_reference, "multi_krum": multi_krum_reference, "trimmed_mean": trimmed_mean_reference,
              "flame": flame_reference}
