"""DB3Distiller: a scikit-learn classifier distilled from a label-only teacher."""

import functools
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.metrics import accuracy_score
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d, validate_data
from skorch import NeuralNet
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ._input_space import InputSpace, check_input, is_frame, take_rows
from ._labeler import _POINTING, DecisionBoundarySoftLabeler
from ._parallel import query_jobs
from ._soft_labels import distances_to_logits, median_nearest_distance
from ._student import KDStudent, _EpochBar, _WeightAverage
from ._teachers import _TeacherParamMixin
from ._zero_shot import ZeroShotTransferSet, _user_stacklevel
from .models import MLP, default_hidden_units

__all__ = ["DB3Distiller"]

_DTYPES = [np.float32, np.float64]
_PREFIX = "student__"
_DEFAULT_BOUNDARY_WEIGHT = 0.3  # benchmark a: +0.3 points of fidelity on MNIST, no extra queries
#: soft_label_check="auto": the held-out share of the transfer set, and the fewest rows it runs on
_CHECK_FRACTION = 0.2
_MIN_CHECK_ROWS = 100
#: the mixtures' check: held-out rows it scores on at least (up to 5 folds: every row), since one fifth of a small
#: transfer set could not tell mixtures that cost 5 points from ones that gain 1 (AER CreditCard: 66 rows a fifth)
_CHECK_SCORED_ROWS = 400
_MAX_CHECK_FOLDS = 5
_TABLE_MAX_EPOCHS = 150
_TABLE_MIN_HIDDEN_UNITS = 128
#: queried rows on a table: batches of 256, epochs for about 3,000 steps (at least 2, at most the default's epochs);
#: 8 epochs fell short there (credit_data, logistic regression: 98.1 % fidelity at 8 epochs, 99.9 % at 25)
_QUERIED_BATCH_SIZE = 256
_QUERIED_STEPS = 3000
#: the same for images (raw units): their students learnt more from longer training. Zero-shot (MNIST, 1M queries, the
#: same queries on 3 seeds): 95.5 % on the real digits at 3,000 steps, 97.0 % at 10,000 (benchmark d). Mixtures of
#: real digits at 400 queries per digit: benchmark h
_IMAGE_QUERIED_STEPS = 10_000
#: the decay of a moving average of an image student's weights that it would keep at the end of those steps; None (the
#: last step's weights) since 0.999 was measured (benchmark h): +0.17 points of fidelity on MNIST at 400 mixtures per
#: digit, -0.13 on the quick start's setting, and far worse where a small budget gives a few hundred steps. "swa" (the
#: uniform average of the second half of the steps) lost on the quick start too: -0.07 points with random mixtures at
#: 400 per digit, -0.51 with half of them picked (below; 4 seeds)
_IMAGE_WEIGHT_AVERAGE = None
#: images' mixtures (a real transfer set, no held-out check): the share of them picked where a first student, trained
#: for about _ACTIVE_FIRST_STEPS steps on the transfer set and the other mixtures, is least sure (the smallest gap
#: between its two highest probabilities), out of _ACTIVE_POOL times as many random mixtures (ActiveThief, Pal et al.,
#: AAAI 2020; benchmark h). 0: all random. Half: on the quick start's setting (4 seeds) fidelity rose by 0.41, 0.69 and
#: 0.44 points at 30, 100 and 400 queries per digit and was level at 10; on MNIST at 400, 99.27 % against 98.93 % for
#: random mixtures (3 seeds)
_IMAGE_ACTIVE_SHARE = 0.5
#: the same share for a table's mixtures, from _TABLE_MIN_ACTIVE_ROWS transfer rows; there they train the student
#: unchecked (no held-out check unless soft_label_check=True). The tables' budget curves (benchmark h, 3 seeds): at 100
#: queries per row, +0.57 points of mean fidelity over random unchecked mixtures on six tables (18 pairs), +0.29 on
#: twelve more (24), and +0.58 and +0.32 over the check, in about half the check's fit time
_TABLE_ACTIVE_SHARE = 0.5
#: below this many transfer rows a table's mixtures stay random and checked (from _MIN_CHECK_ROWS): on the three tables
#: under it (83 to 113 rows) picked ones lost up to 3.5 points on a (table, teacher) pair at 10 queries per row and up
#: to 1.7 at 100 (3 seeds), where from 150 rows they lost at most 1.6
_TABLE_MIN_ACTIVE_ROWS = 150
_ACTIVE_FIRST_STEPS = 3000
_ACTIVE_POOL = 4
_QUERIED_MIN_EPOCHS = 2
#: mixup above 0 without max_queries_per_sample: the fit's queries per transfer row (about the full BD search's 391
#: per digit on MNIST, where a copycat on that many teacher-labelled mixtures was level with it: benchmark h)
_DEFAULT_QUERIES_PER_SAMPLE = 400
#: the same for a table: about what the full searches spent per row on benchmark f's tables (31 to 135)
_DEFAULT_TABLE_QUERIES_PER_SAMPLE = 100
#: zero-shot with a budget (``ZeroShotTransferSet(max_queries=B)``): the share of ``B`` that generation may not spend,
#: kept for what the pseudo samples ask after it (their labels, mixtures or boundary searches)
_ZERO_SHOT_RESERVE = 0.2
_MIXTURE_CHUNK = 2**16  # mixtures asked per teacher call (the teacher batches them further)
_TRAINING_DEFAULTS = {"max_epochs": 50, "batch_size": 32, "lr": 1e-3, "optimizer": torch.optim.Adam, "device": "cpu"}


@functools.cache
def _fused_adam_on_cpu():
    """Whether this torch has Adam's fused kernel for CPU tensors (torch 2.4 and later)."""
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _fused_adam(device):
    """Whether the default optimizer uses Adam's fused kernel on ``device``: CPU (where torch has it) and CUDA.

    On 2 CPU cores a table student (10 columns, 128 hidden units, batches of 32) trained in half the
    time with it; the step is the same Adam's, computed in one kernel instead of one per tensor.
    """
    kind = torch.device(device).type
    return _fused_adam_on_cpu() and kind in ("cpu", "cuda")


def _queried_epochs(n_rows, batch_size, max_epochs, steps=_QUERIED_STEPS):
    """Epochs over ``n_rows`` rows in batches of ``batch_size`` for about ``steps`` steps (2 to ``max_epochs``)."""
    per_epoch = -(-n_rows // batch_size)
    return min(max_epochs, max(_QUERIED_MIN_EPOCHS, -(-steps // per_epoch)))


def _queried_targets(codes, target):
    """Targets of queried rows in the layout of ``target``: the class index, and NaN logits (no soft label)."""
    if target.ndim == 1:
        return codes.astype(target.dtype)
    return np.column_stack([codes, np.full((len(codes), target.shape[1] - 1), np.nan)]).astype(np.float32)


def _outside(n, held_out):
    """Boolean mask of the ``n`` rows not in ``held_out``."""
    mask = np.ones(n, dtype=bool)
    mask[held_out] = False
    return mask


def _check_folds(order):
    """The check's held-out folds: fifths of the permutation ``order``, as many as score ``_CHECK_SCORED_ROWS`` rows."""
    size = max(1, int(round(_CHECK_FRACTION * len(order))))
    n_folds = min(_MAX_CHECK_FOLDS, -(-_CHECK_SCORED_ROWS // size), -(-len(order) // size))
    return [order[f * size : (f + 1) * size] if f < _MAX_CHECK_FOLDS - 1 else order[f * size :] for f in range(n_folds)]


def _training_points(boundary, boundary_rows, in_train):
    """The boundary points whose transfer rows (``boundary_rows``) train, or None without points."""
    if boundary is None:
        return None
    keep = in_train[boundary_rows]
    return tuple(a[keep] for a in boundary)


class DB3Distiller(_TeacherParamMixin, ClassifierMixin, BaseEstimator):
    """Distill a label-only teacher into a PyTorch student (DB3KD).

    ``fit(X)`` asks the teacher for the labels of the transfer set ``X``
    and spends a query budget (``max_queries_per_sample``: 400 per row on
    images, 100 on a table when none is given) where it teaches the
    student most. By default (``mixup="auto"``) that is teacher-labelled
    mixtures of transfer pairs, half of them picked where a first student
    is least sure (on a table, from 150 transfer rows), learnt with the
    teacher's hard labels: on MNIST at 400 queries per digit they gave
    99.27 % fidelity against 98.80 % for full boundary searches, and on
    18 table-teacher pairs at 100 per row 93.74 % against 93.17 % for a
    copycat on as many random mixtures (benchmark h). ``mixup=0`` spends it on the
    searches instead: each sample's distance to the teacher's decision
    boundaries, estimated with ``soft_labeler``, becomes soft labels at
    ``temperature`` (DB3KD, Wang, ICML 2021), learnt with the rows the
    searches asked; ``queried_rows=False`` is the paper's DB3KD (the soft
    labels of the transfer set alone). A skorch student
    (:class:`KDStudent`) learns them; the fitted distiller predicts with it.

    Parameters
    ----------
    teacher : object with ``predict``, callable, torch.nn.Module or Teacher
        The teacher, wrapped by :func:`~db3learn.as_teacher`. A fitted
        scikit-learn teacher is never refit, and ``clone`` shares it with
        its query counter, answer cache and distance cache.
    student : None, torch.nn.Module class or instance, or skorch NeuralNet, default=None
        The student network; it must return logits. ``None``: an
        :class:`~db3learn.models.MLP` with one hidden layer sized from the
        data (:func:`~db3learn.models.default_hidden_units`; at least 128
        units for a table, an ``input_space_`` that is not the identity). A module class
        whose ``__init__`` takes ``n_features`` and ``n_classes`` gets them
        from the data. A skorch net contributes its module and settings and
        is trained with the distillation loss.
    soft_labeler : DecisionBoundarySoftLabeler or None, default=None
        How soft labels are made (the boundary searches, when the budget
        buys any: see ``mixup``); ``None`` means
        ``DecisionBoundarySoftLabeler()``. It is cloned and given this
        distiller's teacher. Giving one asks for its soft labels:
        ``mixup="auto"`` is then 0.
    transfer_set : ZeroShotTransferSet or None, default=None
        Generates pseudo samples from the teacher alone (ZSDB3KD). They are
        added to ``X`` in :meth:`fit`; ``fit(None)`` (or an empty ``X`` of
        the right width) trains on them alone. Their soft labels use the
        pseudo samples of the other classes as references. With a DataFrame
        ``X``, the pseudo rows are rows of its columns, dtypes, ranges and
        categories (:meth:`ZeroShotTransferSet.fit`). Its ``max_queries``
        then bounds the whole fit (generation, labels, mixtures, boundary
        searches): generation may spend four fifths of it, and the rows
        share what generation and the labels leave, equally per row, for
        their mixtures (images, see ``mixup``) or their boundary searches
        (a row whose search the budget cuts short learns its hard label,
        see ``queried_rows``). ``fit`` never asks the teacher more rows
        than ``max_queries``; it raises ``ValueError`` before asking them if
        what generation left cannot pay the rows' labels.
    input_space : InputSpace or None, default=None
        How rows of ``X`` become the student's inputs and the search's
        points, and points become valid teacher queries (passed to the soft
        labeler). ``None``: the soft labeler's, by default
        :class:`~db3learn.InputSpace()`: images and other homogeneous float
        arrays stay as they are; a table (a DataFrame, or an array whose
        columns have very different ranges) is standardised per numeric
        column and one-hot encoded per categorical column for the student
        and the distances, while the teacher receives rows in the format of
        ``X`` (a DataFrame with its columns and dtypes, whole numbers in
        integer columns, observed categories). Give
        ``InputSpace(feature_types={...})`` to declare column types.
    temperature : float or None, default=None
        ``T`` of the soft labels and of the KL term (used where the
        searches run: ``mixup`` below 1, a ``soft_labeler`` given, or
        ``queried_rows=False``). ``None``: with the
        default ``-d`` logits, the median distance from the transfer set to
        the nearest other class (in the units of ``X``, so it adapts to the
        data's scale; on MNIST in [0, 1] it is about 2.8, on scikit-learn's
        digits in [0, 1] about 0.95, and on both it scored within noise of
        the best fixed value); with the paper's ``1/d`` logits, the soft
        labeler's ``temperature``. A search over it re-uses cached teacher
        answers and distances.
    kd_weight : float, default=1.0
        Weight of the KL term (:func:`~db3learn.distillation_loss`); 0 trains
        a copycat student on the teacher's hard labels alone and spends no
        queries on boundary distances.
    temperature_squared : bool, default=True
        Scale the KL term by ``T**2`` (Hinton et al., 2015). The DB3KD
        reference code sums the KL over the batch instead, with no ``T**2``.
    boundary_weight : float or None, default=None
        Weight of :func:`~db3learn.boundary_loss`: the student's two logits
        should tie at the point the search found across each transfer
        sample's nearest boundary
        (:meth:`~db3learn.DecisionBoundarySoftLabeler.boundary_points`, no extra
        queries). ``None``: 0.3 when the soft labeler's method finds such
        points (``"bd"``, ``"mbd"``, ``"hsj"``), else 0. On MNIST (benchmark
        a) it raised the student's fidelity to the teacher by about 0.3
        points at no query cost. 0 trains on the transfer set alone (the
        paper's loss).
    queried_rows : "auto" or bool, default="auto"
        Also train on every row the teacher answered during the searches
        (and before them, while the teacher kept rows: see
        :meth:`~db3learn.Teacher.queried_rows`), with the teacher's hard
        label: the student trains on the transfer set (soft labels, boundary
        term) and those rows as one training set, in batches of 256 for
        about 10,000 steps for images (inputs in raw units) and 3,000 for a
        table (at least 2 epochs, at most the default's). The
        search's rows lie mostly near the teacher's decision boundaries,
        where the student learns them; on MNIST (benchmark a, 3 seeds, 391
        queries per digit) fidelity rose from 97.6 % to 98.8 %. It costs no
        queries; it costs memory for the rows (at most 2 GiB:
        ``Teacher(keep_rows=...)``) and training time (on MNIST, 10,000
        steps of a LeNet-5-half student and their 400,000 rows took about
        25 minutes on one thread of 2 CPU cores that other work shared,
        against about 40 s for the transfer set alone). It switches the teacher's ``keep_rows``
        on; if the teacher answered the searches before without keeping
        rows, they run again from its cached answers (a search asked before
        costs no query, only search time) so that their rows are kept, and when the fit ends it switches
        ``keep_rows`` off again and forgets them, so that rows the teacher
        answers later (a ``score``, another fit) never become training rows
        and a pickled distiller does not carry them (a teacher with
        ``keep_rows`` already on keeps every row, as its owner asked).
        ``"auto"``: on for images (an ``input_space_`` that is the
        identity) and wherever mixtures were asked (``mixup``, the default
        on tables); for tables whose searches run, the soft-label check (``soft_label_check``)
        also trains a student with the queried rows on its four fifths
        (leaving out the queried rows nearest a held-out row) and they are
        used unless it agrees less with the teacher on the held-out fifth:
        on tables they helped linear teachers and hurt some tree teachers,
        whose searched rows fell almost all in one class (benchmark g).
        Without the check (``soft_label_check=False``, or ``"auto"`` on fewer
        than 100 rows) a table trains without them; with ``kd_weight=0`` (a copycat, no
        search) neither does an image.
        ``False``: the paper's DB3KD, which learns from the transfer set
        alone. ``queried_rows_`` says what was done. With the queried rows,
        a transfer row whose search a query budget
        (``max_queries_per_sample`` or ``max_queries_per_pair`` of the soft
        labeler) stopped before it bracketed the row's nearest boundary
        within the search's tolerance trains on its hard label, like the
        queried rows: its distances are then coarse upper bounds, and on
        MNIST at 10 and 30 queries per digit their soft labels cost 0.9 and
        1.6 points of fidelity against the copycat on the same rows
        (benchmark h); ``n_soft_labels_`` counts the rows that kept theirs.
    mixup : "auto" or float in [0, 1], default="auto"
        The share of the query budget (``max_queries_per_sample``, beyond
        each transfer row's own label) spent on teacher-labelled mixtures
        ``x_i + lam (x_j - x_i)`` of random pairs of transfer rows (``lam``
        uniform in [0, 1]; on a table, mixed in the search space and
        projected to valid rows), which the student learns with their hard
        labels as queried rows; the rest buys the boundary searches. 1 spends
        no query on a search, so the student is a copycat on the transfer
        set and the mixtures (``kd_weight_`` is 0). On MNIST (benchmark h,
        3 seeds) under budgets of 10 and 30 queries per digit, this
        distiller's students on mixtures agreed with the teacher on 97.1 and
        98.1 % of the held-out digits, against 94.7 and 98.1 % for boundary
        searches cut short by the same budget (at 100: 99.0 % on 2 seeds
        against 97.8 %); with the searches complete (about 390 queries per
        digit) a copycat on as many mixtures was level with them (98.8 %).
        On real images, and on tables of 150 transfer rows or more whose
        mixtures train the student unchecked (``mixup=1``, the default, and
        no check asked: see ``soft_label_check``), half of the mixtures are
        picked where a first student is least sure: after the random half,
        a copycat on the transfer set
        and those mixtures (up to 3,000 steps) scores four times as many
        random mixtures, and the teacher labels the half whose two highest
        probabilities are closest (ActiveThief, Pal et al., AAAI 2020; the
        same queries, one more training). On scikit-learn's digits with an
        SVC teacher (4 seeds) fidelity rose by 0.41, 0.69 and 0.44 points at
        30, 100 and 400 queries per digit, level at 10; on MNIST at 400
        the defaults reached 99.27 % (3 seeds, every one 99.1 % or more)
        against 98.93 % for a copycat on as many random mixtures (benchmark h).
        ``"auto"``: 1 for real images and for tables, with or without a
        budget. On images at 400 queries per digit (the default without a
        budget, about what a full search spends) the defaults reached
        99.27 % fidelity on MNIST against 98.80 % for the full searches and
        their rows (3 seeds each), and 98.31 % against 98.37 % on
        scikit-learn's digits with an SVC teacher (4 and 6 seeds: level).
        On the 18 (table, teacher) pairs of ``benchmarks/tabular.py`` (3 seeds), mixtures bought with
        the queries the full searches spent (31 to 135 per row) gave a
        student that agreed more with the teacher on 12 pairs, by 0.5
        points on average, in about a fifth of the time (it lost up to 4.5
        points against the searches on AER ``CreditCard`` with tree
        teachers, where nearly every
        mixture falls in one class; the held-out check of
        ``soft_label_check`` then kept the copycat; they win there since
        the student's inputs flag a continuous column's point mass, see
        :class:`~db3learn.InputSpace`'s ``point_mass``); with the default
        100 queries per row, half of them picked, and those inputs, the
        student was at or above both copycats on all 18 pairs (the
        searches: 12), 93.74 % fidelity on average against 91.20 % for the
        best copycat and 93.17 % for a copycat on as many random mixtures
        (3 seeds; on 12 more tables with tree teachers, 89.71 % against
        86.51 % and 89.43 %, at or above both copycats on all 24 pairs;
        benchmark h). On the three smallest tables (83 to 113 transfer
        rows) picking lost up to 3.5 points on a pair at 10 queries per
        row, so below 150 rows a table's mixtures stay random (and are
        checked from 100 rows, ``soft_label_check``). With a
        ``transfer_set``: 1 for images, up to
        400 queries per pseudo sample (as many as its ``max_queries`` leaves
        after generation, if fewer): on MNIST (a LeNet-5 teacher, 1M
        queries) the student of mixtures of pseudo samples scored 97.0 % on
        the real digits (3 seeds, 10,000 training steps) where the pseudo
        samples' boundary searches gave 79.9 % (benchmark d); 0 for tables
        (on four numeric tables mixtures were level with the searches). 0 with a
        ``soft_labeler`` given, ``kd_weight=0`` (a copycat on the transfer set alone) and
        ``queried_rows=False`` (the paper's DB3KD, which a mixup above 0
        contradicts: ``ValueError``). ``n_mixtures_`` says how many were
        asked.
    max_queries_per_sample : int or None, default=None
        The fit's query budget per transfer row (pseudo samples included):
        the row's label, its share of the mixtures and its boundary search
        (the soft labeler's own ``max_queries_per_sample``, if smaller,
        bounds the search). 1 is a copycat on the transfer set. ``None``:
        with a ``mixup`` above 0 (``"auto"`` included), 400 on images and
        100 on a table; with ``mixup=0`` (``"auto"`` with a
        ``soft_labeler`` given, or ``queried_rows=False``) whatever the
        searches spend (on MNIST about 390 per digit). A budget a
        search cannot finish in leaves rows without soft labels (see
        ``queried_rows``); the queries are counted by the teacher, whose
        ``max_queries`` stops any overspend.
    soft_label_check : "auto" or bool, default="auto"
        Whether to check, before the final fit, that the soft labels help:
        a fifth of the transfer set is held out (the searches use only the
        other rows as references), the student is trained with the soft
        labels and, with the same seed, as a copycat (``kd_weight=0``) on the
        other four fifths, and the one that agrees more with the teacher on
        the held-out fifth decides the loss of the final fit on every row (a tie goes to the copycat: the soft labels
        must earn their place). It costs no
        queries (the teacher's labels of the transfer set are known) and two
        extra trainings (three when it checks the queried rows). ``"auto"``: for tables (an ``input_space_`` that is
        not the identity) of 100 rows or more, where boundary soft labels
        helped on some tables and cost up to 3 points of fidelity on others
        (``benchmarks/tabular.py``); not for images, where they helped on
        every seed (benchmark a). With mixtures and no search (a table's
        default, ``mixup``), there is no soft label to check: the check
        then compares the copycat with a student that also learns the
        (random) mixtures, and ``queried_rows`` decides whether they train
        the final student. ``"auto"`` runs that check only on tables of 100
        to 149 transfer rows: from 150 rows the mixtures train the student
        unchecked, half of them picked (``mixup``), which on 42 table-teacher
        pairs (3 seeds, benchmark h) gave 0.3 to 0.7 points more mean
        fidelity than the check at 10 and 100 queries per row, in about half
        its fit time. ``True`` (with ``queried_rows="auto"``) checks them on
        any table, on random mixtures; ``False`` or ``queried_rows=True``
        learns them unchecked (picked from 150 rows). It holds out a fifth of the transfer set, or as many
        fifths as score 400 rows (up to five: every row, each held out
        once), trains both students on the rows outside each fold (the
        second also on the mixtures of two such rows) and pools their
        agreement with the teacher over the folds: on AER ``CreditCard``
        (330 transfer rows) one fifth of 66 rows kept mixtures that cost a
        tree teacher's student 5.5 points on one seed. Two trainings per
        fold, no query. ``kd_weight_`` and ``soft_label_check_`` say what
        was chosen.
    max_epochs, batch_size, lr, optimizer, device : default=None
        skorch's training parameters. ``None`` keeps the value of a skorch
        net given as ``student``, else 50 epochs (150 for a table: an
        ``input_space_`` that is not the identity), batches of 32 (with the
        queried rows: batches of 256, epochs for about 10,000 steps on
        images, 3,000 on a table), Adam at
        1e-3 (torch's fused Adam, one kernel per step, on CPU with torch 2.4
        or later and on CUDA: the same updates, and on 2 CPU cores a table
        student trained in about half the time), on
        ``"cpu"``. ``device="cuda"`` trains on a GPU.
    callbacks : list or None, default=None
        skorch callbacks added to the student.
    random_state : int, RandomState instance or None, default=None
        Seeds the student's initialisation and shuffling and the soft
        labeler's random choices: an int makes ``fit`` reproducible.
    verbose : int, default=0
        1 shows progress bars (search, training); 2 adds skorch's epoch
        table.
    **student_params
        ``student__<name>=value`` is passed to the student's module as
        skorch's ``module__<name>``, e.g. ``student__hidden_units=(64,)``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The teacher's labels, of any dtype.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        When ``X`` had string column names.
    student_ : KDStudent
        The fitted skorch student (it predicts class indices into
        ``classes_``).
    soft_labeler_ : DecisionBoundarySoftLabeler
        The fitted soft labeler (``None`` when ``kd_weight == 0``).
    input_space_ : InputSpace
        The fitted input space; the student sees
        ``input_space_.transform(X)``.
    transfer_set_ : ZeroShotTransferSet
        The fitted generator, when ``transfer_set`` was given (with a
        ``max_queries``, its own is generation's share: four fifths).
    temperature_ : float
        The temperature used (the one computed when ``temperature=None``).
    boundary_weight_ : float
        The weight of the boundary term used (0 when ``kd_weight_ == 0``).
    kd_weight_ : float
        The weight of the KL term used: ``kd_weight``, or 0 when the soft
        label check chose the copycat.
    soft_label_check_ : dict or None
        Held-out fidelity of ``"soft labels"`` and ``"copycat"`` when the
        check ran (see ``soft_label_check``; ``"copycat"`` alone when no
        search ran, with mixtures, pooled over the check's folds), and of
        ``"queried rows"`` (the mixtures among them) when it checked them
        (``queried_rows="auto"`` on a table with searches, or with mixtures
        alone below 150 transfer rows or with ``soft_label_check=True``),
        else None.
    queried_rows_ : bool
        Whether the student trained on the queried rows too.
    n_queried_rows_ : int
        How many queried rows it trained on (0 when none).
    n_mixtures_ : int
        How many mixtures the teacher labelled for the student (see
        ``mixup``).
    n_soft_labels_ : int
        How many transfer rows it trained on their soft labels (0 when
        ``kd_weight_ == 0``; with the queried rows, the rows whose search
        resolved their nearest boundary, see ``queried_rows``).
    n_queries_ : int
        Rows the teacher's ``predict`` received during ``fit`` (cache hits
        excluded).

    See Also
    --------
    DecisionBoundarySoftLabeler : the soft labels.
    KDStudent : the student's loss.

    Notes
    -----
    **Scale-out.** The distiller has no ``n_jobs`` of its own: the teacher's
    queries are spread over workers by the soft labeler's and the transfer
    set's ``n_jobs``, which reach the fit through ``clone``, e.g.
    ``DB3Distiller(teacher, soft_labeler=DecisionBoundarySoftLabeler(n_jobs=4),
    transfer_set=ZeroShotTransferSet(..., n_jobs=4))``; results and queries
    are those of the serial run. Under ``joblib.parallel_config(backend="dask")``
    with a ``dask.distributed.Client`` they run on the cluster.

    ``GridSearchCV(n_jobs=...)`` runs its candidates in other processes,
    where the teacher is a copy: the answers and distances they cache stay
    there, so each candidate pays for its own queries and the parent's
    ``n_queries`` does not count them. Warm the cache first (fit once in
    the parent, then search: the copies start from its cache), search
    with ``n_jobs=1`` and put the parallelism in the soft labeler, or use
    a :class:`~db3learn.RemoteTeacher` with ``cache_dir``, whose disk cache
    every process shares.

    References
    ----------
    Z. Wang, "Zero-Shot Knowledge Distillation from a Decision-Based
    Black-Box Model", ICML 2021, arXiv:2106.03310.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.svm import SVC
    >>> from db3learn import DB3Distiller
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> teacher = SVC().fit(X[:1000], y[:1000])  # any model that answers with labels
    >>> student = DB3Distiller(teacher, random_state=0).fit(X[:500])
    >>> student.predict(X[1000:1005])
    array([1, 4, 0, 5, 3])
    >>> round(student.score(X[1000:]), 3)  # fidelity: agreement with the teacher
    0.985
    """

    _parameter_constraints = {
        "teacher": [HasMethods(["predict"]), callable],
        "student": [None, type, torch.nn.Module, NeuralNet],
        "soft_labeler": [None, DecisionBoundarySoftLabeler],
        "transfer_set": [None, ZeroShotTransferSet],
        "input_space": [None, InputSpace],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
        "kd_weight": [Interval(Real, 0, None, closed="left")],
        "temperature_squared": ["boolean"],
        "boundary_weight": [Interval(Real, 0, None, closed="left"), None],
        "queried_rows": [StrOptions({"auto"}), "boolean"],
        "mixup": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "max_queries_per_sample": [Interval(Integral, 1, None, closed="left"), None],
        "soft_label_check": [StrOptions({"auto"}), "boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "optimizer": [type, None],
        "device": [str, torch.device, None],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher,
        *,
        student=None,
        soft_labeler=None,
        transfer_set=None,
        input_space=None,
        temperature=None,
        kd_weight=1.0,
        temperature_squared=True,
        boundary_weight=None,
        queried_rows="auto",
        mixup="auto",
        max_queries_per_sample=None,
        soft_label_check="auto",
        max_epochs=None,
        batch_size=None,
        lr=None,
        optimizer=None,
        device=None,
        callbacks=None,
        random_state=None,
        verbose=0,
        **student_params,
    ):
        self.teacher = teacher
        self.student = student
        self.soft_labeler = soft_labeler
        self.transfer_set = transfer_set
        self.input_space = input_space
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.temperature_squared = temperature_squared
        self.boundary_weight = boundary_weight
        self.queried_rows = queried_rows
        self.mixup = mixup
        self.max_queries_per_sample = max_queries_per_sample
        self.soft_label_check = soft_label_check
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.device = device
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose
        self._student_kwargs = dict(student_params)

    # -- student__<param> routing, as skorch routes module__<param> ------------
    def _student_params(self):
        return dict(getattr(self, "_student_kwargs", {}))

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update(self._student_params())
        return params

    def set_params(self, **params):
        routed = {k: params.pop(k) for k in list(params) if k.startswith(_PREFIX)}
        self._student_kwargs = {**self._student_params(), **routed}
        return super().set_params(**params)

    # -- fitting -----------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Distill the teacher into the student on the transfer set ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features), or None
            The transfer set: unlabelled inputs; the teacher labels them. A
            DataFrame may hold numeric, bool, category and string columns
            (no missing values); the teacher then receives DataFrames with
            the same columns and dtypes. ``None`` only with
            ``transfer_set``.
        y : None or array-like of shape (n_samples,)
            Not used to train (only the teacher's answers are); accepted so
            that scikit-learn's model selection can pass it for scoring.

        Returns
        -------
        self : DB3Distiller

        Raises
        ------
        ValueError
            If ``X`` is not 2-D or holds NaN, missing values or infinity, or
            if the teacher answers one class only to every row of the
            transfer set (the message gives the queries spent; the answers
            stay cached in the teacher).
        QueryBudgetExceeded, TeacherError, TeacherAnswerError
            From the teacher; answers and distances computed so far stay
            cached, so a new ``fit`` resumes where this one stopped.
        """
        _check_student_params(self._student_params())
        if self.queried_rows is False and self.mixup != "auto" and self.mixup > 0:
            raise ValueError(
                f"DB3Distiller got mixup={self.mixup!r} and queried_rows=False: the student learns the mixtures as "
                "rows the teacher answered, and queried_rows=False trains on the transfer set alone (the paper's "
                "DB3KD). Pass mixup=0 for the paper's method, or leave queried_rows='auto'."
            )
        teacher = self._get_teacher()
        q0 = teacher.n_queries
        rng = check_random_state(self.random_state)
        X = self._transfer_set(X, y, teacher, rng)
        labeler = clone(self.soft_labeler) if self.soft_labeler is not None else DecisionBoundarySoftLabeler()
        labeler.set_params(teacher=teacher, verbose=max(labeler.verbose, self.verbose))
        if self.input_space is not None:
            if labeler.input_space is not None:
                raise ValueError(
                    "DB3Distiller got input_space and a soft_labeler with its own input_space; give it once."
                )
            labeler.set_params(input_space=self.input_space)
        if labeler.random_state is None and self.random_state is not None:
            labeler.set_params(random_state=int(rng.randint(2**31 - 1)))
        budget = None if self.transfer_set is None else self.transfer_set.max_queries
        left = None  # what a zero-shot budget leaves the rows' mixtures or searches (None: no such budget)
        if budget is not None:  # generation has spent its share; the labels come next
            # every row's label may be asked (a cached answer can miss when the search space's dtype differs from
            # the pseudo samples'), and without a cache the searches ask each again
            again = 0 if teacher.cache else len(X)
            labels = len(X) + again
            left = budget - (teacher.n_queries - q0)
            if left < labels:
                raise ValueError(
                    f"DB3Distiller: ZeroShotTransferSet(max_queries={budget:,}) bounds the "
                    f"whole fit, and generation left {left:,} queries, fewer than the {labels:,} that the labels of "
                    f"the {len(X):,} rows may cost{' (a teacher without cache asks each twice)' if again else ''}. "
                    "Raise max_queries, or give fewer rows beside the pseudo samples."
                )
        labeler.fit(X)
        if budget is not None:  # the budget less generation and the labels
            left = budget - (teacher.n_queries - q0) - again
        answered = np.unique(labeler.reference_labels_)
        if len(answered) < 2:  # before the boundary searches are paid: there is no boundary to find
            raise ValueError(
                f"DB3Distiller: the teacher answered class {labeler.classes_[answered].tolist()[0]!r} to all "
                f"{len(labeler.references_):,} rows of the transfer set ({teacher.n_queries - q0:,} queries), so there "
                "is only one class to learn; a student needs at least two classes. The answers stay cached in the "
                "teacher. Give a transfer set on which the teacher answers at least two classes, or check that the "
                "teacher is the model you meant."
            )
        self.input_space_ = labeler.input_space_
        Z = self._centred(labeler.references_)  # the student's inputs: X in the search space, centred
        self.classes_ = labeler.classes_
        hard = labeler.reference_labels_
        seed = int(rng.randint(2**31 - 1))
        n_mixtures, search_budget = self._query_plan(len(Z), labeler, left)
        searching = self.kd_weight > 0 and search_budget != 0  # no query left for the searches: a copycat
        if searching and search_budget is not None:
            labeler.set_params(max_queries_per_sample=search_budget)
        held_out = folds = None
        # queried_rows=True: learned unchecked; so are a larger table's mixtures alone, half picked (_picks_mixtures)
        checks_mixtures = n_mixtures and self.queried_rows == "auto" and not self._picks_mixtures(len(Z))
        if (searching or checks_mixtures) and self._checks_soft_labels(Z):
            order = np.random.RandomState(seed).permutation(len(Z))
            if searching:  # rows the check scores on: never references, so no search result points at them
                held_out = order[: max(1, int(round(_CHECK_FRACTION * len(Z))))]
                labeler._restrict_references(np.setdiff1d(np.arange(len(Z)), held_out))
            else:  # mixtures alone: each fold's student learns the mixtures of two rows outside the fold
                folds = _check_folds(order)
        queried_mode = self._queried_mode(held_out is not None or folds is not None, n_mixtures, searching)
        lent = bool(queried_mode) and not teacher.keep_rows  # this fit keeps the rows, and hands them back
        if lent:
            teacher.keep_rows = True  # before the searches of this fit
            if teacher.cache:  # cached distances would skip the searches whose rows are wanted: search again,
                with teacher._lock:  # from the cached answers (no query), so that their rows are kept
                    teacher._memo.clear()
        try:
            self.n_mixtures_ = n_mixtures
            mixture_seed = int(rng.randint(2**31 - 1))
            n_picked = self._n_picked(n_mixtures, len(Z), folds, queried_mode)
            mixtures = self._label_mixtures(
                teacher, labeler, n_mixtures - n_picked, mixture_seed, keep=folds is not None
            )
            self._label_picked_mixtures(teacher, labeler, n_picked, mixture_seed)
            boundary = None
            unresolved = np.zeros(len(Z), dtype=bool)  # rows whose search a budget stopped short of their boundary
            self.boundary_weight_ = 0.0
            if searching:
                self.boundary_weight_ = self._boundary_weight(labeler)
                if self.boundary_weight_ > 0 or (queried_mode and labeler.method in _POINTING):
                    # first: a method without boundary points fails before the search is paid
                    points, nearest = labeler._boundary_points(X)
                    found = np.flatnonzero(nearest >= 0)
                    unresolved = nearest < 0
                    if self.boundary_weight_ > 0:
                        boundary = (
                            self._centred(points[found]).astype(np.float32, copy=False),
                            hard[found],
                            nearest[found],
                        )
                distances = labeler.boundary_distances(X)  # cached by boundary_points' search when it ran
                resolved = distances[~unresolved] if queried_mode and (~unresolved).any() else distances
                self.temperature_ = self._temperature(resolved, labeler)
                logits = distances_to_logits(distances, labeler.distance_to_logit)
                target = np.column_stack([hard, logits]).astype(np.float32)
                self.soft_labeler_ = labeler
            else:
                self.temperature_ = float(self.temperature if self.temperature is not None else labeler.temperature)
                target = hard.astype(np.int64)
                self.soft_labeler_ = None
            self.kd_weight_ = float(self.kd_weight) if searching else 0.0
            self.soft_label_check_ = None
            if held_out is not None:
                self.soft_label_check_ = self._check_soft_labels(
                    Z, target, hard, boundary, found if boundary else None, held_out, seed
                )
                scores = self.soft_label_check_
                if searching and scores["copycat"] >= scores["soft labels"]:  # the soft labels must win
                    self.kd_weight_, self.boundary_weight_ = 0.0, 0.0
                    target, boundary = hard.astype(np.int64), None
            if folds is not None:
                self.soft_label_check_ = self._check_mixtures(Z, hard, folds, mixtures, seed)
            Z = Z.astype(np.float32, copy=False)
            queried = self._queried(teacher, labeler) if queried_mode else None
            if queried is None and queried_mode is True and lent and not teacher.cache and searching:
                warnings.warn(
                    "DB3Distiller: the teacher kept no queried rows, so the student trained on the transfer set "
                    "alone: the teacher (cache=False) remembered the boundary distances of an earlier fit and did "
                    "not search again. Use a teacher with cache=True (its answers make the searches free to "
                    "repeat), or pass queried_rows=False to say that the transfer set alone is meant.",
                    UserWarning,
                    stacklevel=_user_stacklevel(),
                )
            with_rows = target
            if queried is not None and target.ndim == 2 and unresolved.any():
                # with the queried rows, a row whose search a query budget stopped before it bracketed the row's
                # nearest boundary is one more hard label: its distances are coarse upper bounds (benchmark h)
                with_rows = target.copy()
                with_rows[unresolved, 1:] = np.nan
            if queried is not None and queried_mode == "check":
                chosen = "copycat" if self.kd_weight_ == 0 else "soft labels"
                if folds is None:  # the mixtures' check scored them already
                    self.soft_label_check_["queried rows"] = self._check_queried(
                        Z, with_rows, hard, boundary, found if boundary is not None else None, held_out, queried, seed
                    )
                if self.soft_label_check_["queried rows"] < self.soft_label_check_[chosen]:  # a tie keeps them
                    queried = None
            self.queried_rows_ = queried is not None
            self.n_queried_rows_ = 0 if queried is None else len(queried[1])
            if queried is not None:  # one training set: the transfer set with its soft labels, the queried rows without
                Zq, codes = queried
                target = with_rows
                Z, target = np.concatenate([Z, Zq]), np.concatenate([target, _queried_targets(codes, target)])
            self.n_soft_labels_ = (
                int(np.sum(~np.isnan(target[: len(hard), 1]))) if target.ndim == 2 and self.kd_weight_ > 0 else 0
            )
            self.student_ = self._build_student(
                Z.shape[1], len(self.classes_), n_rows=len(Z), queried=queried is not None
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.student_.fit(Z, target, boundary=boundary)
            self.n_queries_ = teacher.n_queries - q0
            return self
        finally:
            if lent:  # the next fit, a score or a pickle of the teacher neither sees nor carries these rows
                teacher._drop_kept_rows()

    def _queried(self, teacher, labeler):
        """The rows the teacher kept, as the student sees them, with their class indices; None if none."""
        rows, labels = teacher.queried_rows()
        if not len(labels):
            return None
        codes = labeler._encode(labels)
        known = np.flatnonzero(codes >= 0)
        try:
            rows = check_input(labeler, take_rows(rows, known), reset=False)
        except ValueError:  # rows of another layout than the transfer set (the teacher served other data)
            return None
        Z = self._centred(self.input_space_._to_z(rows))
        return Z.astype(np.float32, copy=False), codes[known]

    def _queried_mode(self, checked, n_mixtures, searching):
        """Whether the queried rows join the training set: True, "check" (if they win the held-out check) or False."""
        if self.queried_rows != "auto":
            return bool(self.queried_rows)
        if n_mixtures:  # bought to be learned; on a table, unless they lose the held-out check to the copycat
            return "check" if checked else True
        if not searching:
            return False  # a copycat: no search, so no rows beyond the transfer set
        if self.input_space_.identity_:
            return True  # images: they helped on every seed (benchmarks a and g)
        return "check" if checked else False  # tables: they helped linear teachers, hurt some trees

    def _mixup_share(self):
        """The share of the queries beyond the transfer set's labels that buys mixtures (``mixup`` resolved)."""
        if self.mixup != "auto":
            return float(self.mixup)
        if (
            self.queried_rows is False  # the paper's DB3KD
            or self.kd_weight == 0  # a copycat on the transfer set
            or self.soft_labeler is not None  # the soft labels of the labeler given
        ):
            return 0.0
        if self.transfer_set is not None:
            # zero-shot images: mixtures of pseudo samples (MNIST, LeNet-5, 1M queries: 97.0 % accuracy on the real
            # digits over 3 seeds, where the pseudo samples' searches gave 79.9 %, benchmark d); tables: the searches
            # (four numeric tables, 3 seeds: mixtures level with them on average, behind on three of eight pairs)
            return 1.0 if self.input_space_.identity_ else 0.0
        # tables: at the searches' own queries, mixtures taught more (benchmark f); images: under a budget, mixtures
        # taught more per query than searches cut short, and at 400 per digit, half of them picked, more than the full
        # searches (MNIST, 3 seeds: 99.27 % fidelity against 98.80 %; benchmark h)
        return 1.0

    def _query_plan(self, n_rows, labeler, left=None):
        """Mixtures to ask and the search's queries per transfer row (None: unbounded; 0: no search).

        ``left``: the queries a zero-shot budget leaves after generation and the rows' labels, shared
        equally by the rows (None: no such budget).
        """
        share = self._mixup_share()
        per_sample = self.max_queries_per_sample
        own = labeler.max_queries_per_sample
        if per_sample is None and share > 0:
            per_sample = (
                _DEFAULT_QUERIES_PER_SAMPLE if self.input_space_.identity_ else _DEFAULT_TABLE_QUERIES_PER_SAMPLE
            )
        if left is not None:  # each row's label is paid already: its share of what is left comes on top
            cap = left // n_rows + 1
            per_sample = cap if per_sample is None else min(per_sample, cap)
        if per_sample is None:  # no budget and no mixtures: the searches run to the end
            return 0, own
        extra = max(0, per_sample - 1)  # beyond each row's own label
        search = int(np.floor(extra * (1 - share) + 1e-9))
        return int(round(extra * share * n_rows)), search if own is None else min(search, own)

    def _picks_mixtures(self, n_rows):
        """Whether a table's mixtures (with no search) skip the held-out check of ``soft_label_check="auto"`` so
        that some are picked: a real transfer set of at least ``_TABLE_MIN_ACTIVE_ROWS`` rows. ``_n_picked`` picks
        wherever they train unchecked (``soft_label_check=False`` and ``queried_rows=True`` too)."""
        return (
            not self.input_space_.identity_
            and self.transfer_set is None
            and self.soft_label_check == "auto"
            and n_rows >= _TABLE_MIN_ACTIVE_ROWS
            and _TABLE_ACTIVE_SHARE > 0
        )

    def _n_picked(self, n_mixtures, n_rows, folds, queried_mode):
        """How many of the mixtures a first student picks (``_IMAGE_ACTIVE_SHARE``, ``_TABLE_ACTIVE_SHARE``): a real
        transfer set whose mixtures train the student unchecked (a table's from ``_TABLE_MIN_ACTIVE_ROWS`` rows);
        else 0."""
        if not (n_mixtures and self.transfer_set is None):
            return 0
        if folds is not None or queried_mode is not True:
            return 0
        if self.input_space_.identity_:
            return int(n_mixtures * _IMAGE_ACTIVE_SHARE)
        return int(n_mixtures * _TABLE_ACTIVE_SHARE) if n_rows >= _TABLE_MIN_ACTIVE_ROWS else 0

    def _label_picked_mixtures(self, teacher, labeler, n, seed):
        """Ask the teacher for ``n`` mixtures of transfer pairs where a first student is least sure (active learning).

        The first student learns the transfer set's hard labels and the rows the teacher kept so far
        (the random mixtures) for about ``_ACTIVE_FIRST_STEPS`` steps, as a copycat; out of
        ``_ACTIVE_POOL * n`` random mixtures ``x_i + lam (x_j - x_i)``, the ``n`` with the smallest gap
        between its two highest probabilities are labelled by the teacher, which keeps them
        (ActiveThief, Pal et al., AAAI 2020; on MNIST, benchmark h). The pool is scored in chunks and
        only its pairs and ``lam`` are kept, so memory stays that of one chunk.
        """
        queried = self._queried(teacher, labeler) if n else None
        if queried is None:
            return
        Z = labeler.references_
        Zq, codes = queried
        first = self._build_student(
            Zq.shape[1],
            len(self.classes_),
            n_rows=len(Z) + len(Zq),
            kd_weight=0.0,
            boundary_weight=0.0,
            temperature=1.0,
            queried=True,
            steps=_ACTIVE_FIRST_STEPS,
            average=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            first.fit(
                np.concatenate([self._centred(Z).astype(np.float32, copy=False), Zq]),
                np.concatenate([labeler.reference_labels_, codes]).astype(np.int64),
            )
        del Zq, codes, queried
        rng = np.random.RandomState(seed + 1)  # other draws than the random mixtures'
        pool = _ACTIVE_POOL * n
        i, j = rng.randint(len(Z), size=pool), rng.randint(len(Z), size=pool)
        lam = rng.uniform(size=(pool, 1)).astype(Z.dtype, copy=False)
        gap = np.empty(pool, dtype=np.float32)
        with tqdm(total=pool, desc="picking mixtures", unit="row", disable=not self.verbose, leave=False) as bar:
            for start in range(0, pool, _MIXTURE_CHUNK):
                s = slice(start, start + _MIXTURE_CHUNK)
                points = self.input_space_._project(Z[i[s]] + lam[s] * (Z[j[s]] - Z[i[s]]))
                proba = first.predict_proba(self._centred(points).astype(np.float32, copy=False))
                top2 = np.partition(proba, -2, axis=1)[:, -2:]
                gap[s] = top2[:, 1] - top2[:, 0]
                bar.update(len(points))
        picked = np.sort(np.argsort(gap, kind="stable")[:n])
        query = labeler._query(teacher)
        with (
            query_jobs(labeler.n_jobs),
            tqdm(total=n, desc="picked mixtures", unit="row", disable=not self.verbose, leave=False) as bar,
        ):
            for start in range(0, n, _MIXTURE_CHUNK):
                k = picked[start : start + _MIXTURE_CHUNK]
                query(self.input_space_._project(Z[i[k]] + lam[k] * (Z[j[k]] - Z[i[k]])))
                bar.update(len(k))

    def _label_mixtures(self, teacher, labeler, n, seed, keep=False):
        """Ask the teacher for ``n`` mixtures ``x_i + lam (x_j - x_i)`` of random pairs of transfer rows.

        ``lam`` is uniform in [0, 1]; the points are projected to valid rows (a table's categories,
        whole numbers and ranges) and asked in chunks. The teacher keeps them (``keep_rows``), so that
        they come back with the queried rows. ``keep``: also return them, as the student sees them,
        with their class indices and the rows ``i`` and ``j`` mixed (for the mixtures' check), else None.
        """
        if not n:
            return None
        Z = labeler.references_
        kept = []
        rng = np.random.RandomState(seed)
        query = labeler._query(teacher)
        with (
            query_jobs(labeler.n_jobs),
            tqdm(total=n, desc="mixtures", unit="row", disable=not self.verbose, leave=False) as bar,
        ):
            for start in range(0, n, _MIXTURE_CHUNK):
                m = min(_MIXTURE_CHUNK, n - start)
                i, j = rng.randint(len(Z), size=m), rng.randint(len(Z), size=m)
                lam = rng.uniform(size=(m, 1)).astype(Z.dtype, copy=False)
                points = self.input_space_._project(Z[i] + lam * (Z[j] - Z[i]))
                codes = query(points)
                if keep:
                    kept.append((self._centred(points).astype(np.float32), codes, i, j))
                bar.update(m)
        return tuple(np.concatenate(parts) for parts in zip(*kept)) if keep else None

    def _check_mixtures(self, Z, hard, folds, mixtures, seed):
        """Held-out fidelity of the copycat and of the copycat with the mixtures, pooled over ``folds`` (no queries).

        For each fold, both train on the transfer rows outside it with the same seed (the second
        also on the mixtures of two such rows) and are scored on the fold's rows against the
        teacher's labels, which ``fit`` already has.
        """
        Zm, codes, i, j = mixtures
        Z = Z.astype(np.float32, copy=False)
        hard = hard.astype(np.int64)
        agree = {"copycat": 0.0, "queried rows": 0.0}
        for held_out in folds:
            in_train = _outside(len(Z), held_out)
            clean = in_train[i] & in_train[j] & (codes >= 0)  # codes -1: a label outside the classes
            for name, (Z_train, y_train) in {
                "copycat": (Z[in_train], hard[in_train]),
                "queried rows": (
                    np.concatenate([Z[in_train], Zm[clean]]),
                    np.concatenate([hard[in_train], codes[clean]]),
                ),
            }.items():
                build = {"queried": True} if name == "queried rows" else {}
                agree[name] += len(held_out) * self._held_out_fidelity(
                    Z_train, y_train, None, Z[held_out], hard[held_out], seed, **build
                )
        n = sum(len(f) for f in folds)
        return {name: a / n for name, a in agree.items()}

    def _check_queried(self, Z, target, hard, boundary, boundary_rows, held_out, queried, seed):
        """Held-out fidelity of the student trained with the loss chosen and the queried rows (no queries).

        Queried rows whose nearest transfer row is held out are left out (among them the held-out rows
        themselves, whose labels were queried, and the search rows that start from them), so that the
        check does not score the student on rows it was shown.
        """
        Zq, codes = queried
        nearest = NearestNeighbors(n_neighbors=1).fit(Z).kneighbors(Zq, return_distance=False)[:, 0]
        clean = ~np.isin(nearest, held_out)
        in_train = _outside(len(Z), held_out)
        y = target[in_train]
        return self._held_out_fidelity(
            np.concatenate([Z[in_train], Zq[clean]]),
            np.concatenate([y, _queried_targets(codes[clean], y)]),
            _training_points(boundary, boundary_rows, in_train),
            Z[held_out],
            hard[held_out],
            seed,
            queried=True,
        )

    def _held_out_fidelity(self, Z_train, y_train, points, Z_held, hard_held, seed, **build):
        """Train a student (``_build_student(**build)``) with ``seed``; its agreement with ``hard_held``."""
        net = self._build_student(Z_train.shape[1], len(self.classes_), n_rows=len(Z_train), **build)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net.fit(Z_train, y_train, boundary=points)
        return float(np.mean(net.predict(Z_held) == hard_held))

    def _checks_soft_labels(self, Z):
        if self.soft_label_check == "auto":
            return not self.input_space_.identity_ and len(Z) >= _MIN_CHECK_ROWS
        return bool(self.soft_label_check) and len(Z) >= 2

    def _check_soft_labels(self, Z, target, hard, boundary, boundary_rows, held_out, seed):
        """Held-out fidelity of the student trained with and without the soft labels (no queries).

        Both train on the rows outside ``held_out`` (four fifths of the transfer set, whose searches
        used only those rows as references), with the same seed; ``held_out`` scores them against
        the teacher's labels, which ``fit`` already has.
        """
        in_train = _outside(len(Z), held_out)
        Z = Z.astype(np.float32, copy=False)
        candidates = {"copycat": (hard.astype(np.int64), None, 0.0, 0.0)}
        if target.ndim == 2:  # soft labels to check (with mixtures alone, only the copycat to beat)
            candidates["soft labels"] = (target, boundary, float(self.kd_weight), self.boundary_weight_)
        return {
            name: self._held_out_fidelity(
                Z[in_train],
                y[in_train],
                _training_points(points, boundary_rows, in_train),
                Z[held_out],
                hard[held_out],
                seed,
                kd_weight=kd_weight,
                boundary_weight=boundary_weight,
            )
            for name, (y, points, kd_weight, boundary_weight) in candidates.items()
        }

    def _boundary_weight(self, labeler):
        """The weight given, else the default where the labeler's method finds boundary points."""
        if self.boundary_weight is not None:
            return float(self.boundary_weight)
        return _DEFAULT_BOUNDARY_WEIGHT if labeler.method in _POINTING else 0.0

    def _temperature(self, distances, labeler):
        """The temperature given, else for ``-d`` logits the median distance to the nearest other class."""
        if self.temperature is not None:
            return float(self.temperature)
        if labeler.distance_to_logit == "negative":
            T = median_nearest_distance(distances)
            if T is not None:
                return T
        return float(labeler.temperature)

    def _transfer_set(self, X, y, teacher, rng):
        """The validated transfer set: ``X``, plus pseudo samples when ``transfer_set`` is given.

        With ``transfer_set.max_queries``, generation spends at most all but ``_ZERO_SHOT_RESERVE`` of it.
        """
        if self.transfer_set is None:
            if X is None:
                raise ValueError(
                    "DB3Distiller.fit needs a transfer set: pass X (unlabelled inputs), or "
                    "transfer_set=ZeroShotTransferSet(...) to generate one from the teacher alone."
                )
        else:
            gen = clone(self.transfer_set).set_params(teacher=teacher)
            if gen.random_state is None and self.random_state is not None:
                gen.set_params(random_state=int(rng.randint(2**31 - 1)))
            if is_frame(X) and len(X) == 0:
                raise ValueError(
                    "DB3Distiller got an empty DataFrame with transfer_set=ZeroShotTransferSet(...): a table's pseudo "
                    "rows take their columns, ranges and categories from its rows, so give at least a few rows (or a "
                    "float array / None for numeric inputs)."
                )
            X_given = None if X is None or len(X) == 0 else X
            if (
                X_given is None
                and X is not None
                and np.ndim(X) == 2
                and gen.n_features is None
                and gen.input_shape is None
            ):
                gen.set_params(n_features=np.shape(X)[1])
            budget = gen.max_queries
            if budget is not None:  # it bounds the whole fit: what comes after generation keeps its share
                gen.set_params(max_queries=max(1, budget - int(budget * _ZERO_SHOT_RESERVE)))
            pseudo = gen.fit(X_given).samples_
            self.transfer_set_ = gen
            if is_frame(pseudo):  # a table: its rows, then the pseudo rows in its format
                import pandas as pd

                X = pd.concat([X_given, pseudo], ignore_index=True)
            else:
                X = pseudo if X_given is None else np.vstack([np.asarray(X_given, dtype=pseudo.dtype), pseudo])
            y = None
        if is_frame(X):
            X = check_input(self, X, reset=True)
            if y is not None:  # only checked: y may serve for scoring, never for training
                check_consistent_length(X, y)
                check_classification_targets(column_or_1d(y, warn=True))
            return X
        if y is None:
            return validate_data(self, X, dtype=_DTYPES)
        X, y = validate_data(self, X, y, dtype=_DTYPES)  # only checked: y may serve for scoring, never for training
        check_classification_targets(y)
        return X

    def _build_student(
        self,
        n_features,
        n_classes,
        n_rows,
        kd_weight=None,
        boundary_weight=None,
        queried=False,
        temperature=None,
        steps=None,
        average=True,
    ):
        module_params = {"module__" + k[len(_PREFIX) :]: v for k, v in self._student_params().items()}
        student = self.student
        if isinstance(student, NeuralNet):
            base = {
                k: v
                for k, v in student.get_params(deep=False).items()
                # skorch's default DataLoader gives way to KDStudent's (same batches, cut faster)
                if k not in ("criterion", "classes")
                and not (k in ("iterator_train", "iterator_valid") and v is DataLoader)
            }
        else:
            base = {"module": MLP if student is None else student}
        module = base["module"]
        if inspect.isclass(module):
            accepted = inspect.signature(module).parameters
            for name, value in (("n_features", n_features), ("n_classes", n_classes)):
                if name in accepted and f"module__{name}" not in base:
                    base[f"module__{name}"] = value
        if student is None and not self.input_space_.identity_ and "module__hidden_units" not in module_params:
            # a table: at least 128 hidden units (benchmark f: +1 point of fidelity over the data-sized width)
            base["module__hidden_units"] = (max(_TABLE_MIN_HIDDEN_UNITS, default_hidden_units(n_features, n_classes)),)
        base.update(module_params)
        defaults = dict(_TRAINING_DEFAULTS)
        if not self.input_space_.identity_:  # a table: small, fast epochs; its copycats gain up to 150 (benchmark f)
            defaults["max_epochs"] = _TABLE_MAX_EPOCHS
        if queried:  # epochs over every queried row, in large batches: about 10,000 steps on images, 3,000 on tables
            batch_size = self.batch_size or base.get("batch_size") or _QUERIED_BATCH_SIZE
            if steps is None:
                steps = _IMAGE_QUERIED_STEPS if self.input_space_.identity_ else _QUERIED_STEPS
            epochs = _queried_epochs(n_rows, batch_size, defaults["max_epochs"], steps)
            defaults.update(max_epochs=epochs, batch_size=_QUERIED_BATCH_SIZE)
        default_optimizer = self.optimizer is None and "optimizer" not in base
        for name, default in defaults.items():
            value = getattr(self, name)
            if value is not None:
                base[name] = value
            else:
                base.setdefault(name, default)
        if default_optimizer and _fused_adam(base["device"]) and not any(k.startswith("optimizer__") for k in base):
            base["optimizer__fused"] = True  # one kernel per step: the same Adam, half a table student's training time
        callbacks = list(base.get("callbacks") or [])
        if self.callbacks:
            callbacks += list(self.callbacks)
        if (
            average
            and queried
            and self.input_space_.identity_
            and _IMAGE_WEIGHT_AVERAGE
            and not isinstance(student, NeuralNet)
        ):  # the library's own training of an image student keeps an average of its weights
            decay = None if _IMAGE_WEIGHT_AVERAGE == "swa" else _IMAGE_WEIGHT_AVERAGE
            callbacks.append(("weight_average", _WeightAverage(decay)))
        if self.verbose:
            callbacks.append(("epoch_bar", _EpochBar()))
        base["callbacks"] = callbacks or None
        base["verbose"] = int(self.verbose > 1)
        loss = dict(  # the distiller's own: they override a KDStudent's
            classes=list(range(n_classes)),
            temperature=self.temperature_ if temperature is None else temperature,
            kd_weight=self.kd_weight_ if kd_weight is None else kd_weight,
            temperature_squared=self.temperature_squared,
            boundary_weight=self.boundary_weight_ if boundary_weight is None else boundary_weight,
        )
        return KDStudent(**{**base, **loss})

    # -- prediction --------------------------------------------------------------
    def _validated(self, X):
        check_is_fitted(self)
        return check_input(self, X, reset=False)

    def _student_input(self, X):
        X = self._validated(X)
        return self._centred(self.input_space_._to_z(X)).astype(np.float32, copy=False)

    def _centred(self, Z):
        """Points of the search space as the student sees them (identity for images; see InputSpace.point_mass)."""
        return self.input_space_._to_student(Z)

    def predict(self, X):
        """The student's label for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Elements of ``classes_``.
        """
        X = self._student_input(X)
        return self.classes_[self.student_.predict(X)]

    def predict_proba(self, X):
        """The student's class probabilities (softmax of its logits, T = 1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of float32 of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        X = self._student_input(X)
        return self.student_.predict_proba(X)

    def score(self, X, y=None, sample_weight=None):
        """Accuracy against ``y``, or fidelity to the teacher when ``y`` is None.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None, default=None
            True labels. ``None`` scores **fidelity**: the share of samples
            on which the student agrees with the teacher (which costs a
            query per row not already cached).
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        score : float
            In [0, 1].
        """
        X = self._validated(X)
        if y is None:
            y = self._get_teacher().predict(X)
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        tags.non_deterministic = self.random_state is None
        return tags


def _check_student_params(params):
    bad = [k for k in params if not k.startswith(_PREFIX) or len(k) == len(_PREFIX)]
    if bad:
        raise TypeError(
            f"DB3Distiller got unexpected keyword arguments {bad}; extra arguments must be "
            "student__<name>=value, passed to the student's module as skorch's module__<name>."
        )
