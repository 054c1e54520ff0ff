"""Write the README's example teacher and data: ``python examples/make_examples.py``.

- ``digits-svc.skops``: an RBF SVC trained on the first 1,000 of scikit-learn's
  8x8 digits (pixels scaled to [0, 1]), saved with skops;
- ``digits.csv``: the other 797 digits, unlabelled, one header row.

Both are deterministic; ``tests/test_examples.py`` checks that the shipped files
match what this script makes.
"""

import zipfile
from pathlib import Path

import numpy as np
import skops.io
from sklearn.datasets import load_digits
from sklearn.svm import SVC

HERE = Path(__file__).parent


def make_teacher_and_data():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return SVC().fit(X[:1000], y[:1000]), X[1000:]


def main():
    teacher, data = make_teacher_and_data()
    skops.io.dump(teacher, HERE / "digits-svc.skops", compression=zipfile.ZIP_DEFLATED)
    header = ",".join(f"pixel_{i}" for i in range(data.shape[1]))
    np.savetxt(HERE / "digits.csv", data, fmt="%g", delimiter=",", header=header, comments="")


if __name__ == "__main__":
    main()
