"""Boundary-search kernels: how far a sample is from each class of the teacher.

Pure functions of a query function, samples, references and a budget, so that
they can be tested against exact distances without any estimator around them.
Every kernel is vectorised over samples x target classes x directions: each
binary-search step is one large batch of teacher queries.

``query(points) -> codes`` takes an array of shape (n_points, n_features) and
returns an int array of shape (n_points,) with the teacher's class index of
each point (``-1`` for a label outside the classes).

Reference: Z. Wang, *Zero-Shot Knowledge Distillation from a Decision-Based
Black-Box Model*, ICML 2021 (section 3.2: SD and BD).
"""

import math

import numpy as np
from sklearn.neighbors import NearestNeighbors

__all__ = ["select_references", "sample_distances", "binary_search_distances"]


def select_references(X, y, references, reference_codes, n_classes, *, n_directions, selection, rng):
    """Pick, for each sample and each other class, the references to search toward.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The samples.
    y : ndarray of int of shape (n_samples,)
        The teacher's class index of each sample.
    references : ndarray of shape (n_references, n_features)
        Reference samples.
    reference_codes : ndarray of int of shape (n_references,)
        The teacher's class index of each reference.
    n_classes : int
        Number of classes.
    n_directions : int or None
        References per (sample, class): ``K``. ``None`` takes every reference
        of the class.
    selection : {"nearest", "random"}
        ``"nearest"``: the ``K`` references of the class nearest to the sample
        (Euclidean); ``"random"``: ``K`` references drawn uniformly without
        replacement for each sample, as in the paper.
    rng : numpy.random.Generator
        Source of randomness for ``"random"``.

    Returns
    -------
    pair_sample, pair_reference, pair_class : ndarray of int of shape (n_pairs,)
        For each (sample, class, direction) triple: the sample's row, the
        reference's row and the target class. Pairs are grouped by class.
    """
    samples, refs, targets = [], [], []
    for j in range(n_classes):
        ref_idx = np.flatnonzero(reference_codes == j)
        rows = np.flatnonzero(y != j)
        if len(ref_idx) == 0 or len(rows) == 0:
            continue
        k = len(ref_idx) if n_directions is None else min(n_directions, len(ref_idx))
        if selection == "nearest":
            nn = NearestNeighbors(n_neighbors=k).fit(references[ref_idx])
            chosen = ref_idx[nn.kneighbors(X[rows], return_distance=False)]
        else:
            order = np.argsort(rng.random((len(rows), len(ref_idx))), axis=1)[:, :k]
            chosen = ref_idx[order]
        samples.append(np.repeat(rows, k))
        refs.append(chosen.ravel())
        targets.append(np.full(len(rows) * k, j))
    if not samples:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(a).astype(np.int64) for a in (samples, refs, targets))


def _group_min(values, group, n_groups):
    out = np.full(n_groups, np.inf)
    np.minimum.at(out, group, values)
    return out


def sample_distances(X, y, references, pair_sample, pair_reference, pair_class, n_classes):
    """SD, the sample distance: the distance to the nearest reference of each class.

    No queries are needed beyond the teacher's labels of the references.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of int of shape (n_samples,)
        The teacher's class index of each sample.
    references : ndarray of shape (n_references, n_features)
    pair_sample, pair_reference, pair_class : ndarray of int of shape (n_pairs,)
        As returned by :func:`select_references`.
    n_classes : int

    Returns
    -------
    distances : ndarray of float64 of shape (n_samples, n_classes)
        ``min ||r - x||`` over the paired references ``r`` of each class, in
        the units of ``X``; 0 for the sample's own class, ``inf`` for a class
        with no reference.
    """
    lengths = _pair_lengths(X, references, pair_sample, pair_reference, 16384)
    D = _group_min(lengths, pair_sample * n_classes + pair_class, len(X) * n_classes).reshape(len(X), n_classes)
    D[np.arange(len(X)), y] = 0.0
    return D


def binary_search_distances(
    query,
    X,
    y,
    references,
    pair_sample,
    pair_reference,
    pair_class,
    n_classes,
    *,
    tol=1e-3,
    max_queries_per_sample=None,
    max_batch_rows=16384,
    progress=None,
):
    """BD, the boundary distance: a binary search along each direction.

    For each pair (sample ``x``, reference ``r`` of class ``j``) the search
    runs along the segment ``x + t (r - x)``, ``t`` in [0, 1], keeping
    ``t_hi`` on a point the teacher assigns to ``j`` (``r`` itself at first)
    and ``t_lo`` on one it does not, until ``t_hi - t_lo <= tol``. The
    distance of (x, j) is the smallest ``t_hi ||r - x||`` over its pairs, so
    every distance is an upper bound on the true boundary distance that a
    query has confirmed. Each step asks the teacher for one point of every
    pair still in play, in one batch; a pair leaves play once its ``t_lo``
    distance exceeds the best distance already confirmed for its
    (sample, class), since it can no longer win.

    Parameters
    ----------
    query : callable
        ``query(points) -> codes``, see the module docstring.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of int of shape (n_samples,)
        The teacher's class index of each sample.
    references : ndarray of shape (n_references, n_features)
        References; each one's class must be the ``pair_class`` it is paired
        with.
    pair_sample, pair_reference, pair_class : ndarray of int of shape (n_pairs,)
        As returned by :func:`select_references`.
    n_classes : int
    tol : float, default=1e-3
        Tolerance on ``t``, relative to the length of the segment: each pair
        takes at most ``ceil(log2(1 / tol))`` queries.
    max_queries_per_sample : int or None, default=None
        Budget of queries per sample over all its classes and directions.
        When a step would exceed it, the sample's pairs with the smallest
        current distance are refined first, and the rest stop. Never exceeded.
    max_batch_rows : int, default=16384
        Rows per call of ``query`` (memory bound: one batch holds
        ``max_batch_rows x n_features`` values).
    progress : callable or None
        Called as ``progress(n_steps_total)`` before the first step and
        ``progress(None)`` after each step (drives a progress bar).

    Returns
    -------
    distances : ndarray of float64 of shape (n_samples, n_classes)
        Boundary distance estimates in the units of ``X``; 0 for each
        sample's own class; ``inf`` where a class had no reference.
    best_pair : ndarray of int of shape (n_samples, n_classes)
        Index of the pair that gave each distance (-1 where none), so that
        callers can recover the direction and the point found.
    t_hi : ndarray of float64 of shape (n_pairs,)
        Final ``t_hi`` of each pair: the point ``x + t_hi (r - x)`` was
        answered with the pair's class (or is ``r`` itself).
    queries_per_sample : ndarray of int64 of shape (n_samples,)
        Queries spent on each sample.
    """
    n, n_pairs = len(X), len(pair_sample)
    group = pair_sample * n_classes + pair_class
    n_groups = n * n_classes
    length = _pair_lengths(X, references, pair_sample, pair_reference, max_batch_rows)
    t_lo = np.zeros(n_pairs)
    t_hi = np.ones(n_pairs)
    spent = np.zeros(n, dtype=np.int64)
    budget = np.inf if max_queries_per_sample is None else int(max_queries_per_sample)
    n_steps = max(1, math.ceil(math.log2(1.0 / tol)))
    if progress is not None:
        progress(n_steps)
    for _ in range(n_steps):
        best = _group_min(t_hi * length, group, n_groups)
        active = (t_hi - t_lo > tol) & (t_lo * length < best[group])
        idx = np.flatnonzero(active)
        if np.isfinite(budget) and len(idx):
            idx = _within_budget(idx, pair_sample, t_hi * length, spent, budget)
        if len(idx) == 0:
            break
        np.add.at(spent, pair_sample[idx], 1)
        t_mid = 0.5 * (t_lo[idx] + t_hi[idx])
        for start in range(0, len(idx), max_batch_rows):
            sl = slice(start, start + max_batch_rows)
            p = idx[sl]
            origin = X[pair_sample[p]]
            points = origin + t_mid[sl, None] * (references[pair_reference[p]] - origin)
            hit = query(points) == pair_class[p]
            t_hi[p[hit]] = t_mid[sl][hit]
            t_lo[p[~hit]] = t_mid[sl][~hit]
        if progress is not None:
            progress(None)
    dist = t_hi * length
    D = np.full(n_groups, np.inf)
    best_pair = np.full(n_groups, -1, dtype=np.int64)
    if n_pairs:
        order = np.lexsort((dist, group))  # by group, then distance
        first = np.ones(n_pairs, dtype=bool)
        first[1:] = group[order][1:] != group[order][:-1]
        winners = order[first]
        D[group[winners]] = dist[winners]
        best_pair[group[winners]] = winners
    D = D.reshape(n, n_classes)
    D[np.arange(n), y] = 0.0
    return D, best_pair.reshape(n, n_classes), t_hi, spent


def _pair_lengths(X, references, pair_sample, pair_reference, chunk):
    """``||r - x||`` of each pair, computed in chunks to bound memory."""
    out = np.empty(len(pair_sample))
    for start in range(0, len(pair_sample), chunk):
        sl = slice(start, start + chunk)
        out[sl] = np.linalg.norm(references[pair_reference[sl]] - X[pair_sample[sl]], axis=1)
    return out


def _within_budget(idx, pair_sample, dist, spent, budget):
    """Keep, per sample, the active pairs that fit the remaining budget, nearest first."""
    samples = pair_sample[idx]
    order = np.lexsort((dist[idx], samples))
    idx, samples = idx[order], samples[order]
    starts = np.searchsorted(samples, samples, side="left")
    rank = np.arange(len(idx)) - starts
    keep = rank < (budget - spent[samples])
    return np.sort(idx[keep])
