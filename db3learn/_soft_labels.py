"""Soft labels from boundary distances (DB3KD, section 3.3 of the paper)."""

import numpy as np
from scipy.special import softmax

__all__ = ["distances_to_logits", "soft_labels", "median_nearest_distance", "DISTANCE_TO_LOGIT"]

#: The mappings from boundary distances to logits that db3learn offers.
DISTANCE_TO_LOGIT = ("negative", "inverse")

_EPS = 1e-12


def distances_to_logits(distances, mapping="negative"):
    """Turn boundary distances into logits.

    Parameters
    ----------
    distances : array-like of shape (n_samples, n_classes)
        Boundary distances, 0 for each sample's own class (the teacher's
        label), ``inf`` for a class whose boundary was not found.
    mapping : {"negative", "inverse"}, default="negative"
        ``"negative"``: ``z_j = -d_j`` (own class 0, ``inf`` gives ``-inf``,
        probability 0). ``"inverse"``, the paper's mapping (Wang, ICML 2021):
        ``z_j = 1 / d_j`` for the other classes (``inf`` gives 0) and
        ``z_y = sum_{j != y} 1 / d_j`` for the own class, so the own class
        always has the largest logit.

    Returns
    -------
    logits : ndarray of float64 of shape (n_samples, n_classes)

    Examples
    --------
    >>> import numpy as np
    >>> from db3learn import distances_to_logits
    >>> D = np.array([[0.0, 2.0, np.inf]])
    >>> distances_to_logits(D, "inverse")
    array([[0.5, 0.5, 0. ]])
    >>> distances_to_logits(D, "negative")
    array([[ -0.,  -2., -inf]])
    """
    D = _check_distances(distances)
    if mapping == "negative":
        return -D
    if mapping == "inverse":
        own = np.argmin(D, axis=1)
        rows = np.arange(len(D))
        inv = 1.0 / np.maximum(D, _EPS)
        inv[rows, own] = 0.0
        inv[rows, own] = inv.sum(axis=1)
        return inv
    raise ValueError(f"mapping must be one of {DISTANCE_TO_LOGIT}, got {mapping!r}.")


def soft_labels(logits, temperature):
    """``softmax(logits / temperature)`` row by row.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    temperature : float
        Positive; larger is softer.

    Returns
    -------
    probabilities : ndarray of float64 of shape (n_samples, n_classes)
        Rows sum to 1.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}.")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def median_nearest_distance(distances):
    """The median distance from a sample to its nearest other class.

    This is the temperature :class:`~db3learn.DB3Distiller` takes with
    ``temperature=None`` and ``-d`` logits: a distance scale in the units of
    ``X``, so the soft labels ``softmax(-d / T)`` do not change when the data
    are rescaled.

    Parameters
    ----------
    distances : array-like of shape (n_samples, n_classes)
        Boundary distances, 0 for each sample's own class, ``inf`` for a
        class whose boundary was not found.

    Returns
    -------
    float or None
        The median over samples of the smallest positive distance of each
        row; rows with no finite positive distance are left out. ``None``
        when no row has one.

    Raises
    ------
    ValueError
        If ``distances`` is not 2-D or holds NaN or negative values.

    Examples
    --------
    >>> import numpy as np
    >>> from db3learn import median_nearest_distance
    >>> median_nearest_distance([[0.0, 2.0, 5.0], [1.0, 0.0, np.inf], [3.0, 4.0, 0.0]])
    2.0
    >>> median_nearest_distance([[0.0, np.inf]]) is None
    True
    """
    D = _check_distances(distances)
    nearest = np.where(D > 0, D, np.inf).min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    return float(np.median(nearest)) if len(nearest) else None


def _check_distances(distances):
    """``distances`` as a 2-D float64 array, or a ValueError that says what is wrong."""
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2:
        raise ValueError(f"distances must be 2-D of shape (n_samples, n_classes), got shape {D.shape}.")
    if np.isnan(D).any() or (D < 0).any():
        raise ValueError("distances must be non-negative (inf allowed); got NaN or negative values.")
    return D
