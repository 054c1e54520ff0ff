"""The student's loader gives torch DataLoader's batches and random draws, so training is bit-identical."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import DataLoader

from db3learn._student import KDStudent, _BatchLoader
from db3learn.models import MLP


def _batches(loader_cls, dataset, seed, **kwargs):
    torch.manual_seed(seed)
    batches = list(loader_cls(dataset, batch_size=32, **kwargs))
    return batches, torch.rand(3)  # the global RNG state after the epoch


@pytest.mark.parametrize("kwargs", [{"shuffle": True}, {"shuffle": False}, {"shuffle": True, "drop_last": True}])
@pytest.mark.parametrize("target", ["hard", "soft", "none"])
def test_batch_loader_gives_the_dataloaders_batches(kwargs, target):
    rng = np.random.RandomState(0)
    X = rng.randn(203, 5).astype(np.float32)
    y = {"hard": rng.randint(0, 3, 203), "soft": rng.randn(203, 4).astype(np.float32), "none": None}[target]
    for dataset in (Dataset(X, y), *ValidSplit(5)(Dataset(X, y), None if y is None or y.ndim == 2 else y)):
        (a, ra), (b, rb) = _batches(DataLoader, dataset, 1, **kwargs), _batches(_BatchLoader, dataset, 1, **kwargs)
        assert torch.equal(ra, rb) and len(a) == len(b)
        for p, q in zip(a, b):
            assert type(p) is type(q)
            assert all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(p, q))


def test_student_trains_as_with_the_dataloader():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    nets = []
    for loader in (DataLoader, _BatchLoader):
        torch.manual_seed(0)
        net = KDStudent(
            MLP,
            module__n_features=6,
            module__n_classes=2,
            classes=[0, 1],
            max_epochs=3,
            kd_weight=0,
            iterator_train=loader,
            iterator_valid=loader,
        ).fit(X, y)
        nets.append(net)
    assert all(torch.equal(p, q) for p, q in zip(nets[0].module_.parameters(), nets[1].module_.parameters()))
    assert np.array_equal(nets[0].predict_proba(X), nets[1].predict_proba(X))
