"""Shared pieces of the benchmarks: the MNIST split, the LeNet-5 teacher, timing teachers, CSV output."""

import csv
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from db3learn import Teacher, TorchTeacher
from db3learn.datasets import load_mnist
from db3learn.demo import train_lenet5_teacher


def mnist_split(seed=0, n_test=1000, n_transfer=1000):
    """The benchmark split: teacher trains on 4,000 digits, transfer set = 1,000 of them, 1,000 held out."""
    X, y = load_mnist()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=n_test, stratify=y, random_state=seed)
    return X_train, y_train, X_train[:n_transfer], X_test, y_test


def lenet5_teacher(X_train, y_train, seed=0, epochs=10):
    torch.set_num_threads(torch.get_num_threads())
    return train_lenet5_teacher(X_train, y_train, max_epochs=epochs, random_state=seed)


class TimedMixin:
    """Adds up the wall time spent inside the wrapped model's predict."""

    predict_seconds = 0.0

    def _predict_batch(self, X):
        start = time.perf_counter()
        try:
            return super()._predict_batch(X)
        finally:
            self.predict_seconds += time.perf_counter() - start


class TimedTorchTeacher(TimedMixin, TorchTeacher):
    pass


class TimedTeacher(TimedMixin, Teacher):
    pass


def gap_closed(value, copycat, ceiling):
    """Share of the copycat-to-ceiling gap that ``value`` closes."""
    return (value - copycat) / (ceiling - copycat) if ceiling != copycat else np.nan


def peak_memory(fn):
    """``fn()``'s result and the peak resident memory of this process while it ran, in MiB (memory_profiler)."""
    from memory_profiler import memory_usage

    peak, result = memory_usage((fn, (), {}), max_usage=True, retval=True, interval=0.2, include_children=False)
    return result, float(peak)


def summarise(records, keys, means):
    """One row per group of ``records`` sharing ``keys`` (first-seen order): the mean of each column in ``means``
    (``fidelity``'s standard deviation after it) and the number of seeds."""
    groups = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for key, rs in groups.items():
        row = dict(zip(keys, key))
        for column in means:
            row[column] = float(np.mean([r[column] for r in rs]))
            if column == "fidelity":
                row["fidelity_std"] = float(np.std([r["fidelity"] for r in rs]))
        row["n_seeds"] = len(rs)
        rows.append(row)
    return rows


def write_csv(path, rows):
    """Write a list of dicts (all with the same keys) as a CSV file with a header."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
