"""PyTorch modules for teachers and students.

Both take flat rows of shape (batch, n_features), as scikit-learn data come,
and return logits of shape (batch, n_classes).
"""

import math

import torch
from torch import nn

__all__ = ["MLP", "LeNet5", "default_hidden_units"]


def default_hidden_units(n_features, n_classes):
    """Hidden width of the default student: ``clip(2 (n_features + n_classes), 32, 512)``."""
    return int(min(512, max(32, 2 * (n_features + n_classes))))


class MLP(nn.Module):
    """A multi-layer perceptron with ReLU, the default student of db3learn.

    Parameters
    ----------
    n_features : int
        Input width.
    n_classes : int
        Output width (one logit per class).
    hidden_units : tuple of int or None, default=None
        Width of each hidden layer; ``None`` gives one layer of
        :func:`default_hidden_units` units.
    dropout : float, default=0.0
        Dropout after each hidden layer.
    """

    def __init__(self, n_features, n_classes, hidden_units=None, dropout=0.0):
        super().__init__()
        if hidden_units is None:
            hidden_units = (default_hidden_units(n_features, n_classes),)
        layers, width = [], n_features
        for h in hidden_units:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, X):
        """The logits of a batch of rows.

        Parameters
        ----------
        X : Tensor of shape (batch, n_features), float32

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        """
        return self.net(X)


class LeNet5(nn.Module):
    """LeNet-5 as in the DB3KD paper: conv 20/50, fully connected 200.

    ``width`` scales every layer: ``width=0.5`` is the paper's LeNet-5-half
    (conv 10/25, fc 100) and ``width=0.2`` its LeNet-5-fifth (conv 4/10,
    fc 40).

    Parameters
    ----------
    n_features : int, default=784
        Input width; rows are reshaped to ``input_shape``.
    n_classes : int, default=10
    input_shape : tuple of int or None, default=None
        (channels, height, width); ``None`` means one channel of a square
        image of ``n_features`` pixels.
    width : float, default=1.0
    """

    def __init__(self, n_features=784, n_classes=10, input_shape=None, width=1.0):
        super().__init__()
        if input_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ValueError(f"LeNet5 needs input_shape for {n_features} features (not a square image).")
            input_shape = (1, side, side)
        self.input_shape = tuple(input_shape)
        c1, c2, fc = (max(1, round(k * width)) for k in (20, 50, 200))
        self.features = nn.Sequential(
            nn.Conv2d(self.input_shape[0], c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *self.input_shape)).numel()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, fc), nn.ReLU(), nn.Linear(fc, n_classes))

    def forward(self, X):
        """The logits of a batch of flat images.

        Parameters
        ----------
        X : Tensor of shape (batch, n_features), float32
            Each row an image flattened row by row (reshaped to
            ``input_shape`` inside).

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        """
        return self.classifier(self.features(X.reshape(len(X), *self.input_shape)))
