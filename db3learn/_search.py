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

__all__ = [
    "select_references",
    "sample_distances",
    "binary_search_distances",
    "sign_opt_distances",
    "hopskipjump_distances",
    "plane_distances",
    "keyed_unit_vectors",
    "success",
]


def select_references(X, y, references, reference_codes, n_classes, *, n_directions, selection, rng, keys=None):
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
    rng : numpy.random.Generator, RandomState or None
        Source of randomness for ``"random"`` when ``keys`` is None.
    keys : ndarray of uint64 of shape (n_samples,) or None, default=None
        For ``"random"``: a key per sample (from the seed and the sample's
        bytes). The draws are then a fixed function of (key, class), so a
        sample gets the same references whichever other samples share the
        call.

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
            if keys is None:
                draws = rng.random((len(rows), len(ref_idx)))
            else:
                draws = keyed_bits(np.asarray(keys)[rows], j, len(ref_idx))
            order = np.argsort(draws, axis=1, kind="stable")[:, :k]
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


def success(codes, target, own):
    """Whether each answer reaches its goal.

    ``target >= 0``: the answer is that class (targeted search);
    ``target == -1``: the answer is any class but ``own`` (untargeted).
    """
    return np.where(target >= 0, codes == target, codes != own)


def _bisect(
    ask,
    lo,
    hi,
    n_steps,
    *,
    tol=0.0,
    group=None,
    n_groups=None,
    scale=None,
    select=None,
    max_batch_rows=16384,
    progress=None,
):
    """Synchronous bisection of many brackets ``[lo, hi]`` (``hi`` succeeds, ``lo`` fails).

    Each step asks, in batches of at most ``max_batch_rows``, one midpoint of
    every bracket still in play: wider than ``tol``, and, when ``group`` is
    given, not already beaten (``lo * scale`` above the best ``hi * scale``
    of its group). ``select(idx)`` may narrow the entries asked further (a
    budget). ``ask(idx, t) -> bool`` queries the entries ``idx`` at ``t``.
    Updates ``lo`` and ``hi`` in place; returns the number of queries per entry.
    """
    spent = np.zeros(len(lo), dtype=np.int64)
    scale = np.ones(len(lo)) if scale is None else scale
    for _ in range(n_steps):
        active = hi - lo > tol
        if group is not None:
            best = _group_min(hi * scale, group, n_groups)
            active &= lo * scale < best[group]
        idx = np.flatnonzero(active)
        if select is not None and len(idx):
            idx = select(idx)
        if len(idx) == 0:
            break
        spent[idx] += 1
        mid = 0.5 * (lo[idx] + hi[idx])
        for start in range(0, len(idx), max_batch_rows):
            sl = slice(start, start + max_batch_rows)
            hit = ask(idx[sl], mid[sl])
            hi[idx[sl][hit]] = mid[sl][hit]
            lo[idx[sl][~hit]] = mid[sl][~hit]
        if progress is not None:
            progress(None)
    return spent


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
    prune=True,
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
        Ends of the segments; each one's class must be the ``pair_class``
        it is paired with.
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
    prune : bool, default=True
        Stop a pair once it can no longer win its (sample, class). ``False``
        resolves every direction to ``tol`` (what :func:`plane_distances`
        needs: the crossing point of every direction).
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
    t_lo, t_hi : ndarray of float64 of shape (n_pairs,)
        Final bracket of each pair: the point ``x + t_hi (r - x)`` was
        answered with the pair's class (or is ``r`` itself), the point at
        ``t_lo`` was not (or is ``x`` itself).
    queries_per_sample : ndarray of int64 of shape (n_samples,)
        Queries spent on each sample.
    """
    n, n_pairs = len(X), len(pair_sample)
    group = pair_sample * n_classes + pair_class
    n_groups = n * n_classes
    length = _pair_lengths(X, references, pair_sample, pair_reference, max_batch_rows)
    t_lo, t_hi = np.zeros(n_pairs), np.ones(n_pairs)
    spent = np.zeros(n, dtype=np.int64)
    budget = np.inf if max_queries_per_sample is None else int(max_queries_per_sample)
    n_steps = max(1, math.ceil(math.log2(1.0 / tol)))
    if progress is not None:
        progress(n_steps)
    own = y[pair_sample]

    def ask(idx, t):
        origin = X[pair_sample[idx]]
        points = origin + t.astype(X.dtype)[:, None] * (references[pair_reference[idx]] - origin)
        return success(query(points), pair_class[idx], own[idx])

    def select(idx):
        if np.isfinite(budget):
            idx = _within_budget(idx, pair_sample, t_hi * length, spent, budget)
        np.add.at(spent, pair_sample[idx], 1)
        return idx

    _bisect(
        ask,
        t_lo,
        t_hi,
        n_steps,
        tol=tol,
        group=group if prune else None,
        n_groups=n_groups,
        scale=length,
        select=select,
        max_batch_rows=max_batch_rows,
        progress=progress,
    )
    D, best_pair = _best_per_group(t_hi * length, group, n_groups)
    D = D.reshape(n, n_classes)
    D[np.arange(n), y] = 0.0
    return D, best_pair.reshape(n, n_classes), t_lo, t_hi, spent


def plane_distances(
    query,
    X,
    y,
    references,
    pair_sample,
    pair_reference,
    pair_class,
    n_classes,
    *,
    low,
    high,
    tol=1.0 / 64,
    ridge=1e-3,
    step_grid=(0.8, 1.0, 1.25, 1.6, 2.0, 3.0),
    n_bisect=6,
    max_queries_per_sample=None,
    max_batch_rows=16384,
    progress=None,
):
    """Plane-fit boundary distance: BD's boundary points give the normal of the boundary, then one search along it.

    1. BD without pruning (:func:`binary_search_distances`, ``prune=False``):
       every direction ``u_k`` toward a reference of class ``j`` is bisected
       to ``tol``, which gives the distance ``d_k`` at which the segment
       enters class ``j``'s region.
    2. If the boundary of that region near ``x`` were a hyperplane at
       distance ``D`` with unit normal ``n``, then ``d_k (n . u_k) = D`` for
       every ``k``: the vector ``a = n / D`` solves ``a . u_k = 1 / d_k``.
       The least-norm solution in the span of the ``u_k`` (ridge ``ridge``
       on their Gram matrix) gives the estimate ``D_hat = 1 / ||a||`` and
       the direction ``a / ||a||``, a normal estimate that costs no query.
    3. One search along that direction: the points at ``D_hat`` times each
       factor of ``step_grid`` are asked in one batch, and the bracket
       between the last factor that fails and the first that reaches ``j``
       is bisected ``n_bisect`` times. Points are clipped to
       ``[low, high]``; the distance is that of the clipped point.

    The distance of (x, j) is the smaller of BD's and the plane search's,
    so, as for BD, a query has confirmed every distance returned. The
    planar-boundary assumption is that of the geometric decision-based
    attacks qFool (Liu et al., ICCV 2019) and GeoDA (Rahmati et al., CVPR
    2020); they estimate the normal from random perturbations at one
    boundary point, here it comes from the boundary points BD has already
    paid for, along directions toward real samples of the class.

    Parameters
    ----------
    query, X, y, references, pair_sample, pair_reference, pair_class, n_classes
        As in :func:`binary_search_distances`.
    low, high : float or ndarray of shape (n_features,)
        Where query points are clipped.
    tol : float, default=1/64
        BD's tolerance on ``t`` (6 bisection steps per direction): the fit
        needs every direction's crossing, coarsely.
    ridge : float, default=1e-3
        Added to the diagonal of the Gram matrix of the unit directions.
    step_grid : sequence of float, default=(0.8, 1.0, 1.25, 1.6, 2.0, 3.0)
        Multiples of ``D_hat`` asked first along the normal estimate.
    n_bisect : int, default=6
        Bisection steps after the grid.
    max_queries_per_sample : int or None, default=None
        Budget per sample over both stages, never exceeded: BD spends first
        (nearest directions first); the plane search of a (sample, class)
        costs ``len(step_grid) + n_bisect`` queries and is given to the
        sample's nearest classes while the rest of the budget pays for it.
    max_batch_rows : int, default=16384
    progress : callable or None
        As in :func:`binary_search_distances`.

    Returns
    -------
    distances : ndarray of float64 of shape (n_samples, n_classes)
        In the units of ``X``; 0 for each sample's own class; ``inf`` where
        a class had no reference.
    queries_per_sample : ndarray of int64 of shape (n_samples,)
    """

    def bd_progress(total):  # BD's steps, then the grid and the bisection of the plane search
        progress(None if total is None else total + 1 + n_bisect)

    D, _, t_lo, t_hi, spent = binary_search_distances(
        query,
        X,
        y,
        references,
        pair_sample,
        pair_reference,
        pair_class,
        n_classes,
        tol=tol,
        max_queries_per_sample=max_queries_per_sample,
        prune=False,
        max_batch_rows=max_batch_rows,
        progress=None if progress is None else bd_progress,
    )
    # the directions of each (sample, class), padded to the largest count; -1 where none
    group = pair_sample * n_classes + pair_class
    order = np.lexsort((np.arange(len(group)), group))
    groups, starts, counts = np.unique(group[order], return_index=True, return_counts=True)
    if len(groups) == 0:
        return D, spent
    width = int(counts.max())
    slot = np.arange(len(order)) - np.repeat(starts, counts)
    members = np.full((len(groups), width), -1, dtype=np.int64)
    members[np.repeat(np.arange(len(groups)), counts), slot] = order
    resolved = np.zeros(members.shape, dtype=bool)
    has = members >= 0
    resolved[has] = (t_hi - t_lo)[members[has]] <= tol * (1 + 1e-9)
    rows, cls = groups // n_classes, groups % n_classes
    # only where two or more crossings are known does the fit add a direction; the budget pays nearest first
    cost = len(step_grid) + n_bisect
    current = D[rows, cls]
    candidates = np.flatnonzero(resolved.sum(axis=1) >= 2)
    if max_queries_per_sample is not None and len(candidates):
        candidates = _within_budget(candidates, rows, current, spent, int(max_queries_per_sample), cost)
    if len(candidates) == 0:
        return D, spent
    dtype = X.dtype
    n_features = X.shape[1]
    origin = X[rows[candidates]]
    d_hat = np.empty(len(candidates))
    normal = np.empty((len(candidates), n_features), dtype=dtype)
    chunk = max(1, (1 << 22) // (width * n_features))  # about 32 MB of float64 directions at a time
    for sl in _chunks(len(candidates), chunk):
        m, ok = members[candidates[sl]], resolved[candidates[sl]]
        safe = np.where(m >= 0, m, 0)
        seg = references[pair_reference[safe]].astype(np.float64) - X[pair_sample[safe]].astype(np.float64)
        length = np.linalg.norm(seg, axis=2)
        U = np.where(ok[..., None], seg / np.maximum(length, 1e-30)[..., None], 0.0)
        crossing = 0.5 * (t_lo[safe] + t_hi[safe]) * length
        r = np.where(ok, 1.0 / np.maximum(crossing, 1e-30), 0.0)
        gram = np.einsum("gkf,glf->gkl", U, U) + ridge * np.eye(width)
        a = np.einsum("gk,gkf->gf", np.linalg.solve(gram, r[..., None])[..., 0], U)
        norm_a = np.linalg.norm(a, axis=1)
        d_hat[sl] = 1.0 / norm_a
        normal[sl] = (a / norm_a[:, None]).astype(dtype)
    target, own = cls[candidates], y[rows[candidates]]

    def points_at(idx, t):
        return np.clip(origin[idx] + t.astype(dtype)[:, None] * normal[idx], low, high)

    def ask(idx, t):
        return success(query(points_at(idx, t)), target[idx], own[idx])

    grid = np.asarray(step_grid, dtype=np.float64)
    every = np.tile(np.arange(len(candidates)), len(grid))
    hit = np.empty(len(every), dtype=bool)
    t_grid = np.repeat(grid, len(candidates)) * np.tile(d_hat, len(grid))
    for sl in _chunks(len(every), max_batch_rows):
        hit[sl] = ask(every[sl], t_grid[sl])
    hit = hit.reshape(len(grid), len(candidates)).T
    np.add.at(spent, rows[candidates], len(grid))
    if progress is not None:
        progress(None)
    found = np.flatnonzero(hit.any(axis=1))
    k = hit[found].argmax(axis=1)  # the first factor that reaches the class
    hi = grid[k] * d_hat[found]
    lo = np.where(k > 0, grid[np.maximum(k - 1, 0)], 0.0) * d_hat[found]
    used = _bisect(
        lambda idx, t: ask(found[idx], t), lo, hi, n_bisect, max_batch_rows=max_batch_rows, progress=progress
    )
    np.add.at(spent, rows[candidates[found]], used)
    reached = np.linalg.norm(points_at(found, hi).astype(np.float64) - origin[found], axis=1)
    g = candidates[found]
    D[rows[g], cls[g]] = np.minimum(D[rows[g], cls[g]], reached)
    return D, spent


def _best_per_group(dist, group, n_groups):
    """Smallest ``dist`` of each group and the entry that has it (-1 for empty groups)."""
    D = np.full(n_groups, np.inf)
    best = np.full(n_groups, -1, dtype=np.int64)
    if len(dist):
        order = np.lexsort((dist, group))  # by group, then distance
        first = np.ones(len(order), dtype=bool)
        first[1:] = group[order][1:] != group[order][:-1]
        winners = order[first]
        D[group[winners]] = dist[winners]
        best[group[winners]] = winners
    return D, best


def _pair_lengths(X, references, pair_sample, pair_reference, chunk):
    """``||r - x||`` of each pair, computed in chunks to bound memory."""
    out = np.empty(len(pair_sample))
    for start in range(0, len(pair_sample), chunk):
        sl = slice(start, start + chunk)
        out[sl] = np.linalg.norm(references[pair_reference[sl]] - X[pair_sample[sl]], axis=1)
    return out


def _within_budget(idx, pair_sample, dist, spent, budget, cost=1):
    """Keep, per sample, the active pairs that fit the remaining budget at ``cost`` queries each, nearest first."""
    samples = pair_sample[idx]
    order = np.lexsort((dist[idx], samples))
    idx, samples = idx[order], samples[order]
    starts = np.searchsorted(samples, samples, side="left")
    rank = np.arange(len(idx)) - starts
    keep = rank < (budget - spent[samples]) // cost
    return np.sort(idx[keep])


# -- randomness keyed by pair, so that results do not depend on the batch ------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keyed_bits(keys, counter, n):
    """``n`` random uint64 per key, a fixed function of (key, counter): shape (len(keys), n)."""
    keys = np.asarray(keys, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(keys ^ _splitmix64(np.full(1, counter, dtype=np.uint64)))
        return _splitmix64(base[:, None] + np.arange(n, dtype=np.uint64)[None, :] * _GOLDEN)


def keyed_unit_vectors(keys, counter, n_vectors, n_features, dtype=np.float32):
    """Random unit vectors, a fixed function of (key, counter): shape (len(keys), n_vectors, n_features).

    Each pair's stream depends only on its own key and the round counter,
    never on which other pairs share the batch, so a sample searched alone
    gets the same directions as in a batch of thousands.
    """
    bits = keyed_bits(keys, counter, n_vectors * n_features)
    u1 = ((bits >> np.uint64(32)).astype(np.float64) + 1.0) / 2.0**32
    u2 = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32
    normal = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(dtype)
    normal = normal.reshape(len(keys), n_vectors, n_features)
    return normal / np.linalg.norm(normal, axis=2, keepdims=True)


def _normalize(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)


def _pair_budgets(pair_sample, n_samples, max_queries_per_pair, max_queries_per_sample, queries_per_sample):
    """Per-pair budgets: the per-pair cap, and an equal share of each sample's remaining budget."""
    budget = np.full(len(pair_sample), np.inf if max_queries_per_pair is None else float(max_queries_per_pair))
    if max_queries_per_sample is not None:
        spent = np.zeros(n_samples) if queries_per_sample is None else queries_per_sample
        n_pairs = np.bincount(pair_sample, minlength=n_samples)
        share = np.floor(np.maximum(max_queries_per_sample - spent, 0) / np.maximum(n_pairs, 1))
        budget = np.minimum(budget, share[pair_sample])
    return budget


def _record_snapshots(snap, snapshots, rows, spent_before, spent_after, g_before, g_after):
    """Record, for each snapshot a round crossed, the distance reached within that many queries."""
    for k, s in enumerate(snapshots):
        crossed = (spent_before < s) & (spent_after >= s)
        snap[rows[crossed], k] = np.where(spent_after[crossed] == s, g_after[crossed], g_before[crossed])


def _fill_snapshots(snap, g):
    """Snapshots a pair never reached hold its final distance (reached within fewer queries)."""
    if snap is not None:
        fill = np.isnan(snap)
        snap[fill] = np.broadcast_to(g[:, None], snap.shape)[fill]
    return snap


def _chunks(n, size):
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + max(1, size)))


def sign_opt_distances(
    query,
    X,
    y,
    theta,
    g_lo,
    g_hi,
    pair_sample,
    pair_class,
    pair_key,
    *,
    low,
    high,
    n_grad=200,
    beta=1e-3,
    alpha=0.2,
    max_queries_per_pair=20000,
    max_queries_per_sample=None,
    queries_per_sample=None,
    snapshots=None,
    max_batch_rows=16384,
    progress=None,
):
    """MBD, the minimal boundary distance: Sign-OPT over the search direction.

    Minimises ``g(theta)``, the distance along the unit direction ``theta``
    from ``x`` to the region of class ``j`` (targeted) or of any other class
    (``pair_class == -1``, untargeted), with the sign-gradient estimate of
    Sign-OPT (Cheng et al., ICLR 2020) as the DB3KD paper does (Wang, ICML
    2021): ``n_grad`` random unit vectors ``u``, one query each, tell the
    sign of ``g(theta + beta u) - g(theta)``; ``theta`` moves against their
    signed sum with a line search on ``alpha``; each candidate's ``g`` is
    re-measured by a binary search to tolerance ``beta / 500`` (relative
    to ``g``). When ``alpha < 1e-4`` it is reset to 1 and ``beta`` divided by
    10; a pair stops when ``beta < 1e-8`` or its budget cannot pay a whole
    round. All pairs advance together, so every phase of a round is one
    large batch; the line search tries ``alpha / 4``, ``alpha`` and
    ``2 alpha`` at once and keeps the best, which quarters ``alpha`` when
    nothing improves and doubles it while the largest step wins.

    Parameters
    ----------
    query : callable
        ``query(points) -> codes``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of int of shape (n_samples,)
        The teacher's class index of each sample.
    theta : ndarray of shape (n_pairs, n_features)
        Unit start directions (BD's best ones).
    g_lo, g_hi : ndarray of float64 of shape (n_pairs,)
        A bracket of ``g(theta)``: at ``g_hi`` the goal is reached (a query
        or a reference confirmed it), at ``g_lo`` it is not.
    pair_sample, pair_class : ndarray of int of shape (n_pairs,)
        The sample and target class (-1: untargeted) of each pair.
    pair_key : ndarray of uint64 of shape (n_pairs,)
        Seeds of each pair's random directions (:func:`keyed_unit_vectors`).
    low, high : float or ndarray of shape (n_features,)
        Valid input range; every point asked is clipped to it.
    n_grad : int, default=200
        ``Q``, queries per gradient estimate.
    beta : float, default=1e-3
        Initial perturbation of the direction.
    alpha : float, default=0.2
        Initial step of the line search.
    max_queries_per_pair : int or None, default=20000
    max_queries_per_sample : int or None, default=None
        With ``queries_per_sample`` (already spent), each sample's remaining
        budget is shared equally by its pairs. Budgets are never exceeded.
    queries_per_sample : ndarray of int of shape (n_samples,) or None
    snapshots : sequence of int or None
        Query counts per pair at which to record ``g``.
    max_batch_rows : int, default=16384
    progress : callable or None
        Called with ``None`` after each round.

    Returns
    -------
    g : ndarray of float64 of shape (n_pairs,)
        Final distances (each confirmed by a query, in the units of ``X``).
    theta : ndarray of shape (n_pairs, n_features)
        Final directions.
    queries_per_pair : ndarray of int64 of shape (n_pairs,)
    snapshot_distances : ndarray of float64 of shape (n_pairs, len(snapshots)) or None
        ``g`` when the pair's spent queries first reached each snapshot
        (the final ``g`` for snapshots never reached); non-increasing.
    """
    n_pairs, n_features = theta.shape
    theta = np.array(theta, dtype=X.dtype, copy=True)
    g_lo, g_hi = np.array(g_lo, dtype=np.float64), np.array(g_hi, dtype=np.float64)
    own = y[pair_sample]
    budget = _pair_budgets(pair_sample, len(X), max_queries_per_pair, max_queries_per_sample, queries_per_sample)
    spent = np.zeros(n_pairs, dtype=np.int64)
    snapshots = tuple(snapshots or ())
    snap = np.full((n_pairs, len(snapshots)), np.nan) if snapshots else None
    alphas = np.full(n_pairs, float(alpha))
    betas = np.full(n_pairs, float(beta))
    factors = np.array([0.25, 1.0, 2.0])

    def ask_along(entry_pairs, dirs_of):
        """Ask entries (each a pair) at ``x + t * dirs_of(entries)``."""

        def ask(idx, t):
            p = entry_pairs[idx]
            points = X[pair_sample[p]] + t.astype(X.dtype)[:, None] * dirs_of(idx)
            return success(query(np.clip(points, low, high)), pair_class[p], own[p])

        return ask

    def bisect_steps(b):
        return np.maximum(1, np.ceil(np.log2(500.0 / b))).astype(np.int64)

    # sharpen the starting bracket to the search's tolerance
    steps0 = int(bisect_steps(beta))
    sel = np.flatnonzero(budget >= steps0)
    if len(sel):
        lo, hi = g_lo[sel] / g_hi[sel], np.ones(len(sel))
        sub = ask_along(sel, lambda i: theta[sel[i]] * g_hi[sel[i], None].astype(X.dtype))
        used = _bisect(sub, lo, hi, steps0, tol=beta / 500.0, max_batch_rows=max_batch_rows)
        spent[sel] += used
        g_lo[sel], g_hi[sel] = lo * g_hi[sel], hi * g_hi[sel]
    counter = 0
    while True:
        round_cost = n_grad + len(factors) * (1 + bisect_steps(betas))
        active = np.flatnonzero((betas >= 1e-8) & (spent + round_cost <= budget))
        if len(active) == 0:
            break
        counter += 1
        before, g_before = spent[active].copy(), g_hi[active].copy()
        # 1. sign-gradient estimate at the current distance, Q queries per pair
        grad = np.empty((len(active), n_features), dtype=X.dtype)
        for sl in _chunks(len(active), max_batch_rows // n_grad):
            a = active[sl]
            U = keyed_unit_vectors(pair_key[a], counter, n_grad, n_features, X.dtype)
            trial = _normalize(theta[a][:, None, :] + betas[a, None, None].astype(X.dtype) * U)
            points = X[pair_sample[a]][:, None, :] + g_hi[a, None, None].astype(X.dtype) * trial
            reached = success(
                query(np.clip(points.reshape(-1, n_features), low, high)),
                np.repeat(pair_class[a], n_grad),
                np.repeat(own[a], n_grad),
            ).reshape(len(a), n_grad)
            sign = np.where(reached, -1.0, 1.0).astype(X.dtype)
            grad[sl] = np.einsum("aq,aqf->af", sign, U) / n_grad
        spent[active] += n_grad
        # 2. candidates theta - alpha_k grad; which still reach the goal at the current g?
        cand_alpha = alphas[active, None] * factors[None, :]  # (A, 3)
        cand = _normalize(theta[active][:, None, :] - cand_alpha[..., None].astype(X.dtype) * grad[:, None, :])
        cand = cand.reshape(-1, n_features)
        owner = np.repeat(np.arange(len(active)), len(factors))
        pairs = active[owner]
        ok = np.empty(len(cand), dtype=bool)
        for sl in _chunks(len(cand), max_batch_rows):
            points = X[pair_sample[pairs[sl]]] + g_hi[pairs[sl], None].astype(X.dtype) * cand[sl]
            ok[sl] = success(query(np.clip(points, low, high)), pair_class[pairs[sl]], own[pairs[sl]])
        spent[active] += len(factors)
        # 3. binary search the distance of the candidates that reach it
        hit = np.flatnonzero(ok)
        c_lo, c_hi = np.zeros(len(hit)), np.ones(len(hit))
        if len(hit):
            c_pairs = pairs[hit]
            scale = g_hi[c_pairs]
            sub = ask_along(
                c_pairs, lambda i, cand=cand, hit=hit, scale=scale: cand[hit[i]] * scale[i, None].astype(X.dtype)
            )
            steps = int(bisect_steps(betas[c_pairs]).max())
            used = _bisect(
                sub,
                c_lo,
                c_hi,
                steps,
                tol=betas[c_pairs] / 500.0,
                group=owner[hit],
                n_groups=len(active),
                scale=scale,
                max_batch_rows=max_batch_rows,
            )
            np.add.at(spent, c_pairs, used)
            c_dist = c_hi * scale
            best, winner = _best_per_group(c_dist, owner[hit], len(active))
            improved = np.flatnonzero(best < g_hi[active])
            w = hit[winner[improved]]
            a = active[improved]
            theta[a] = cand[w]
            g_lo[a], g_hi[a] = c_lo[winner[improved]] * g_hi[a], best[improved]
            alphas[a] = cand_alpha.reshape(-1)[w]
            failed = np.setdiff1d(np.arange(len(active)), improved)
        else:
            failed = np.arange(len(active))
        alphas[active[failed]] /= 4.0
        reset = active[alphas[active] < 1e-4]
        alphas[reset] = 1.0
        betas[reset] /= 10.0
        if snap is not None:
            _record_snapshots(snap, snapshots, active, before, spent[active], g_before, g_hi[active])
        if progress is not None:
            progress(None)
    return g_hi, theta, spent, _fill_snapshots(snap, g_hi)


def hopskipjump_distances(
    query,
    X,
    y,
    theta,
    g_lo,
    g_hi,
    pair_sample,
    pair_class,
    pair_key,
    *,
    low,
    high,
    n_grad=20,
    n_steps=4,
    tol=None,
    max_queries_per_pair=1000,
    max_queries_per_sample=None,
    queries_per_sample=None,
    snapshots=None,
    max_batch_rows=16384,
    progress=None,
):
    """A batched, targeted HopSkipJump search of the minimal boundary distance.

    HopSkipJump (Chen, Jordan and Wainwright, IEEE S&P 2020) walks along the
    boundary: at the boundary point ``b`` it estimates the boundary's normal
    from the answers to ``n_grad * sqrt(t)`` small random perturbations
    (baseline-corrected signs), jumps from ``b`` along it by a geometric
    step (``||b - x|| / sqrt(t)``, halved until the goal is still reached;
    here all ``n_steps`` halvings are asked at once and the largest that
    reaches the goal is kept), and binary-searches back toward ``x`` on the
    segment to the new point. Every pair advances together, so each phase
    is one large batch. Unlike Sign-OPT it needs no line search on the
    distance: one gradient estimate moves the boundary point directly,
    which is what makes it cheap at budgets of tens of queries per pair.

    Parameters
    ----------
    query, X, y, theta, g_lo, g_hi, pair_sample, pair_class, pair_key, low, high
        As in :func:`sign_opt_distances`.
    n_grad : int, default=20
        Gradient queries in the first round; round ``t`` uses
        ``n_grad * sqrt(t)``.
    n_steps : int, default=4
        Geometric step sizes tried per round.
    tol : float or None, default=None
        Binary-search tolerance relative to the distance; ``None``:
        ``n_features ** -1.5`` as in HopSkipJump.
    max_queries_per_pair : int or None, default=1000
    max_queries_per_sample, queries_per_sample, snapshots, max_batch_rows, progress
        As in :func:`sign_opt_distances`.

    Returns
    -------
    g, theta, queries_per_pair, snapshot_distances
        As in :func:`sign_opt_distances`.
    """
    n_pairs, n_features = theta.shape
    dtype = X.dtype
    tol = float(n_features) ** -1.5 if tol is None else float(tol)
    bisect_steps = max(1, math.ceil(math.log2(1.0 / tol)))
    own = y[pair_sample]
    origin = X[pair_sample]
    g_lo, g_hi = np.array(g_lo, dtype=np.float64), np.array(g_hi, dtype=np.float64)
    theta = np.array(theta, dtype=dtype, copy=True)
    budget = _pair_budgets(pair_sample, len(X), max_queries_per_pair, max_queries_per_sample, queries_per_sample)
    spent = np.zeros(n_pairs, dtype=np.int64)
    snapshots = tuple(snapshots or ())
    snap = np.full((n_pairs, len(snapshots)), np.nan) if snapshots else None

    def bisect_segments(pairs, ends, lo, hi):
        """Bisect ``x + t (end - x)`` for ``t`` in [lo, hi] (goal reached at hi)."""

        def ask(idx, t):
            p = pairs[idx]
            points = origin[p] + t.astype(dtype)[:, None] * (ends[idx] - origin[p])
            return success(query(np.clip(points, low, high)), pair_class[p], own[p])

        used = _bisect(ask, lo, hi, bisect_steps, tol=tol * hi, max_batch_rows=max_batch_rows)
        np.add.at(spent, pairs, used)

    # sharpen the start bracket, so the boundary point lies close to the boundary
    sel = np.flatnonzero(budget >= bisect_steps)
    if len(sel):
        ends = origin[sel] + g_hi[sel, None].astype(dtype) * theta[sel]
        lo, hi = g_lo[sel] / g_hi[sel], np.ones(len(sel))
        bisect_segments(sel, ends, lo, hi)
        g_lo[sel], g_hi[sel] = lo * g_hi[sel], hi * g_hi[sel]
    t = 0
    while True:
        t += 1
        q = int(math.ceil(n_grad * math.sqrt(t)))
        round_cost = q + n_steps + bisect_steps
        active = np.flatnonzero(spent + round_cost <= budget)
        if len(active) == 0:
            break
        before, g_before = spent[active].copy(), g_hi[active].copy()
        boundary = origin[active] + g_hi[active, None].astype(dtype) * theta[active]
        delta = (g_hi[active] / n_features).astype(dtype)  # HopSkipJump's perturbation size
        # 1. normal of the boundary at b, from baseline-corrected signs
        normal = np.empty((len(active), n_features), dtype=dtype)
        for sl in _chunks(len(active), max_batch_rows // q):
            a = active[sl]
            U = keyed_unit_vectors(pair_key[a], t, q, n_features, dtype)
            points = boundary[sl][:, None, :] + delta[sl, None, None] * U
            phi = np.where(
                success(
                    query(np.clip(points.reshape(-1, n_features), low, high)),
                    np.repeat(pair_class[a], q),
                    np.repeat(own[a], q),
                ).reshape(len(a), q),
                1.0,
                -1.0,
            )
            mean = phi.mean(axis=1, keepdims=True)
            phi = np.where(np.abs(mean) == 1.0, phi, phi - mean).astype(dtype)
            normal[sl] = _normalize(np.einsum("aq,aqf->af", phi, U))
        spent[active] += q
        # 2. geometric steps from b along the normal, all sizes at once; keep the largest that reaches the goal
        eps = g_hi[active] / math.sqrt(t)
        sizes = eps[:, None] * 0.5 ** np.arange(n_steps)[None, :]
        jumps = np.clip(boundary[:, None, :] + sizes[..., None].astype(dtype) * normal[:, None, :], low, high)
        jumps = jumps.reshape(-1, n_features)
        owner = np.repeat(np.arange(len(active)), n_steps)
        ok = np.empty(len(jumps), dtype=bool)
        for sl in _chunks(len(jumps), max_batch_rows):
            ok[sl] = success(query(jumps[sl]), pair_class[active[owner[sl]]], own[active[owner[sl]]])
        spent[active] += n_steps
        ok = ok.reshape(len(active), n_steps)
        moved = np.flatnonzero(ok.any(axis=1))
        # 3. back toward x: bisect the segment x -> jump
        if len(moved):
            k = ok[moved].argmax(axis=1)  # the largest step that reaches the goal
            ends = jumps.reshape(len(active), n_steps, n_features)[moved, k]
            pairs = active[moved]
            lo, hi = np.zeros(len(moved)), np.ones(len(moved))
            bisect_segments(pairs, ends, lo, hi)
            seg = ends - origin[pairs]
            length = np.linalg.norm(seg, axis=1)
            dist = hi * length
            better = dist < g_hi[pairs]
            p = pairs[better]
            theta[p] = seg[better] / length[better, None].astype(dtype)
            g_lo[p], g_hi[p] = lo[better] * length[better], dist[better]
        if snap is not None:
            _record_snapshots(snap, snapshots, active, before, spent[active], g_before, g_hi[active])
        if progress is not None:
            progress(None)
    return g_hi, theta, spent, _fill_snapshots(snap, g_hi)
