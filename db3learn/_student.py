"""The student: a skorch classifier trained with the knowledge-distillation loss."""

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring
from skorch.dataset import Dataset
from torch.utils.data import DataLoader, Subset, default_collate
from tqdm.auto import tqdm

__all__ = ["KDStudent", "boundary_loss", "distillation_loss"]


def distillation_loss(
    student_logits, teacher_logits, hard_labels, *, temperature, kd_weight=1.0, temperature_squared=True
):
    """Cross-entropy on the teacher's labels plus the temperature-scaled KL term.

    ``loss = CE(s, y) + kd_weight * c * KL(softmax(z / T) || softmax(s / T))``
    with the KL averaged over the batch and ``c = T**2`` when
    ``temperature_squared`` (Hinton et al., 2015: keeps the soft term's
    gradients independent of ``T``), else ``c = 1``.

    The DB3KD reference code (Wang, ICML 2021) sums the KL over the batch
    with no ``T**2``; with a batch of ``B`` rows that equals
    ``kd_weight = B / T**2`` here.

    Parameters
    ----------
    student_logits : torch.Tensor of shape (batch, n_classes)
    teacher_logits : torch.Tensor of shape (batch, n_classes)
        Logits from boundary distances (``-inf`` allowed: probability 0). A
        row of NaN has no soft label: it trains on its hard label alone
        (the KL term is averaged over the other rows).
    hard_labels : torch.Tensor of int64 of shape (batch,)
        The teacher's class indices.
    temperature : float
        ``T > 0``.
    kd_weight : float, default=1.0
        Weight of the KL term; 0 gives plain (copycat) cross-entropy.
    temperature_squared : bool, default=True

    Returns
    -------
    loss : torch.Tensor, scalar
    """
    loss = F.cross_entropy(student_logits, hard_labels)
    if kd_weight:
        soft = ~torch.isnan(teacher_logits).all(dim=1)  # rows without a soft label: hard label only
        if not soft.all():
            if not soft.any():
                return loss
            student_logits, teacher_logits = student_logits[soft], teacher_logits[soft]
        p_teacher = torch.softmax(teacher_logits / temperature, dim=1)
        log_q = torch.log_softmax(student_logits / temperature, dim=1)
        # xlogy gives 0 where the teacher's probability is 0 (an unreached class)
        kl = (torch.special.xlogy(p_teacher, p_teacher) - p_teacher * log_q).sum(dim=1).mean()
        scale = temperature**2 if temperature_squared else 1.0
        loss = loss + kd_weight * scale * kl
    return loss


def boundary_loss(student_logits, own, other, *, temperature, temperature_squared=True):
    """Squared logit margin of the student at points on the teacher's decision boundaries.

    ``loss = c * mean(((s_own - s_other) / T) ** 2)`` over the points, with
    ``c = T**2`` when ``temperature_squared`` (as the KL term of
    :func:`distillation_loss`, so both scale alike with the units of the
    logits), else ``c = 1``. Each point lies where the teacher's answer
    changes from ``own`` to ``other``, so the loss is 0 when the student's
    two logits tie there: it puts the student's boundary where the teacher's
    is. Boundary points as distillation targets follow Heo et al., AAAI 2019
    ("Knowledge distillation with adversarial samples supporting decision
    boundary"); here they are the points the label-only boundary search has
    already paid for (:meth:`~db3learn.DecisionBoundarySoftLabeler.boundary_points`).

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_points, n_classes)
        The student's logits at the boundary points.
    own, other : torch.Tensor of int64 of shape (n_points,)
        The class on each side of each point (the sample's own class, and
        the class the point was answered with).
    temperature : float
        ``T > 0``, the KL term's.
    temperature_squared : bool, default=True

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from db3learn import boundary_loss
    >>> logits = torch.tensor([[2.0, 2.0, -1.0], [3.0, 1.0, 0.0]])
    >>> boundary_loss(logits, torch.tensor([0, 0]), torch.tensor([1, 1]), temperature=2.0)
    tensor(2.)
    """
    margin = student_logits.gather(1, own[:, None]) - student_logits.gather(1, other[:, None])
    scale = temperature**2 if temperature_squared else 1.0
    return scale * ((margin / temperature) ** 2).mean()


def _hard_label_accuracy(net, X, y):
    y = np.asarray(y)
    hard = y[:, 0] if y.ndim == 2 else y
    return float(np.mean(net.predict(X) == hard.astype(np.int64)))


class _EpochBar(Callback):
    """A tqdm bar over training epochs."""

    def __init__(self, desc="training student"):
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar_.update()

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


class _WeightAverage(Callback):
    """Keeps an average of the student's weights over its training steps, which replaces them at the end of ``fit``.

    ``decay=None`` (SWA; Izmailov et al., UAI 2018): the uniform average of
    the weights after each training step of the second half of the
    training (its step count is ``max_epochs`` times the batches of the
    training rows), so its length follows the run. A float: after every
    training step the average moves toward the module's weights, ``avg =
    decay * avg + (1 - decay) * w`` (the first step's weights start it):
    Polyak averaging. Both are kept by torch's
    ``torch.optim.swa_utils.AveragedModel`` (buffers averaged too). Used by
    the library's training of image students (``_IMAGE_WEIGHT_AVERAGE``;
    benchmark h).

    Parameters
    ----------
    decay : float or None, default=None
        None: SWA over the second half of the steps. A float in [0, 1):
        the moving average's decay (0.999 averages about the last thousand
        steps).
    """

    def __init__(self, decay=None):
        self.decay = decay

    def on_train_begin(self, net, X=None, **kwargs):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.step_ = 0
        if self.decay is None:
            batches = -(-len(X) // net.batch_size) if X is not None and net.batch_size > 0 else 1
            self.start_ = (net.max_epochs * batches) // 2  # steps before the average starts
            self.average_ = None
        else:
            self.start_ = 0
            self.average_ = AveragedModel(net.module_, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        self.step_ += 1
        if self.step_ <= self.start_:
            return
        if self.average_ is None:  # SWA's first step: the average starts at these weights
            from torch.optim.swa_utils import AveragedModel

            self.average_ = AveragedModel(net.module_, use_buffers=True)
        self.average_.update_parameters(net.module_)

    def on_train_end(self, net, **kwargs):
        if self.average_ is not None:
            net.module_.load_state_dict(self.average_.module.state_dict())
        del self.average_  # a copy of the module: not kept in the fitted student


def _batchable(a):
    """``a`` as a tensor to cut batches from, or None where row-by-row collation could differ."""
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray) and a.ndim >= 1 and a.dtype.kind in "biuf" and a.dtype.isnative:
        return torch.as_tensor(a)
    return None


class _BatchLoader(DataLoader):
    """torch's DataLoader, cutting each batch out of array data with one index.

    skorch's ``Dataset`` returns one row per ``__getitem__`` and the
    DataLoader stacks the rows of each batch: for a small tabular student
    that costs more than the training step. For a skorch ``Dataset`` (or a
    ``Subset`` of one, as ``ValidSplit`` makes) over numeric NumPy arrays or
    tensors, this loader indexes the arrays once per batch instead. The
    batches, their order and the random numbers drawn are the DataLoader's
    own (its sampler and batch sampler, then the base seed each DataLoader
    iterator draws), so training is bit-identical. Anything else (workers, a
    ``collate_fn``, pandas, dict or sparse inputs, a ``Dataset`` subclass)
    goes through the DataLoader unchanged.
    """

    def _arrays(self):
        if self.num_workers or self.collate_fn is not default_collate or self.batch_sampler is None:
            return None
        dataset, rows = self.dataset, None
        if type(dataset) is Subset and type(dataset.dataset) is Dataset:
            dataset, rows = dataset.dataset, torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
        if type(dataset) is not Dataset or dataset.X_is_ndframe:
            return None
        X = _batchable(dataset.X)
        y = None if dataset.y is None else _batchable(dataset.y)
        n = len(dataset)
        if X is None or len(X) != n or (dataset.y is not None and (y is None or len(y) != n)):
            return None
        return X, y, rows

    def __iter__(self):
        arrays = self._arrays()
        if arrays is None:
            return super().__iter__()
        batches = iter(self.batch_sampler)  # as torch's _BaseDataLoaderIter: the (lazy) sampler first,
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # then the base seed it draws
        return self._cut(*arrays, batches)

    @staticmethod
    def _cut(X, y, rows, batches):
        for index in batches:
            index = torch.as_tensor(index, dtype=torch.int64)
            if rows is not None:
                index = rows[index]
            # a skorch Dataset without y gives a placeholder tensor([0.]) per row
            yield [X[index], torch.zeros(len(index), 1) if y is None else y[index]]


class KDStudent(NeuralNetClassifier):
    """A skorch classifier trained with the knowledge-distillation loss.

    ``fit(X, y)`` takes ``y`` of shape (n_samples, 1 + n_classes): column 0
    is the teacher's class index, the other columns the teacher's logits
    ``z`` (from boundary distances, see
    :class:`~db3learn.DecisionBoundarySoftLabeler`). A 1-D ``y`` of class
    indices trains on hard labels alone (copycat). The loss is
    :func:`distillation_loss`. The module must return logits;
    ``predict_proba`` applies the softmax, ``predict`` returns class indices.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        As in skorch.
    temperature : float, default=1.0
        ``T`` of the KL term, applied to the teacher's and the student's
        logits alike.
    kd_weight : float, default=1.0
        Weight of the KL term.
    temperature_squared : bool, default=True
        Scale the KL term by ``T**2`` (Hinton et al., 2015).
    boundary_weight : float, default=0.0
        Weight of :func:`boundary_loss` on the ``boundary`` points given to
        :meth:`fit`: each training step adds it on as many points, drawn at
        random, as the step's batch has rows. 0 (or no ``boundary``) trains
        on the transfer set alone.
    criterion : default=torch.nn.CrossEntropyLoss
        Kept so that skorch applies the softmax in ``predict_proba``; the
        loss itself is :func:`distillation_loss`.
    train_split : default=None
        No validation split by default. A skorch ``ValidSplit`` works,
        stratified ones too: they stratify on the teacher's hard labels, and
        ``valid_acc`` scores against them.
    iterator_train, iterator_valid : default=a DataLoader subclass
        torch's ``DataLoader``, except that array data are cut into batches
        with one index per batch instead of being collated row by row (the
        same batches in the same order: results are those of
        ``DataLoader``). Any skorch iterator may be given.
    verbose : int, default=0
    **kwargs
        Any other skorch ``NeuralNetClassifier`` parameter.

    See Also
    --------
    DB3Distiller : builds, fills and fits a ``KDStudent`` from a teacher.
    """

    def __init__(
        self,
        module,
        *args,
        temperature=1.0,
        kd_weight=1.0,
        temperature_squared=True,
        boundary_weight=0.0,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        iterator_train=_BatchLoader,
        iterator_valid=_BatchLoader,
        verbose=0,
        **kwargs,
    ):
        super().__init__(
            module,
            *args,
            criterion=criterion,
            train_split=train_split,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            verbose=verbose,
            **kwargs,
        )
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.temperature_squared = temperature_squared
        self.boundary_weight = boundary_weight

    def fit(self, X, y=None, boundary=None, **fit_params):
        """Train on ``X, y`` (see the class docstring), and on ``boundary`` points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, 1 + n_classes)
        boundary : tuple (points, own, other) or None, default=None
            ``points`` of shape (n_points, n_features), float32, on the
            teacher's decision boundaries; ``own`` and ``other`` of shape
            (n_points,), class indices of the two sides (see
            :func:`boundary_loss`). Used when ``boundary_weight > 0``.
        **fit_params
            As skorch's ``fit``.

        Returns
        -------
        self : KDStudent

        Raises
        ------
        ValueError
            If the three arrays of ``boundary`` differ in length, or
            ``points`` has not the width of ``X``.
        """
        self.boundary_ = None
        if boundary is not None and self.boundary_weight > 0:
            points, own, other = boundary
            points = torch.as_tensor(np.asarray(points, dtype=np.float32))
            own, other = (torch.as_tensor(np.asarray(v, dtype=np.int64)) for v in (own, other))
            if not len(points) == len(own) == len(other):
                raise ValueError(
                    f"boundary needs as many points as own and other classes; got {len(points)}, {len(own)} and {len(other)}."
                )
            if len(points) and points.shape[1:] != tuple(np.shape(X)[1:]):
                raise ValueError(
                    f"boundary points have shape {tuple(points.shape[1:])} per row, X has {tuple(np.shape(X)[1:])}."
                )
            self.boundary_ = (points, own, other) if len(points) else None
        return super().fit(X, y, **fit_params)

    def train_step_single(self, batch, **fit_params):
        """skorch's step, plus ``boundary_weight * boundary_loss`` on a random draw of the boundary points."""
        step = super().train_step_single(batch, **fit_params)
        if getattr(self, "boundary_", None) is None or not self.boundary_weight:
            return step
        points, own, other = self.boundary_
        draw = torch.randint(len(points), (len(step["y_pred"]),))
        logits = self.infer(points[draw].to(self.device))
        extra = self.boundary_weight * boundary_loss(
            logits,
            own[draw].to(self.device),
            other[draw].to(self.device),
            temperature=self.temperature,
            temperature_squared=self.temperature_squared,
        )
        extra.backward()
        step["loss"] = step["loss"] + extra.detach()
        return step

    @property
    def _default_callbacks(self):
        callbacks = dict(super()._default_callbacks)
        callbacks["valid_acc"] = EpochScoring(_hard_label_accuracy, name="valid_acc", lower_is_better=False)
        return list(callbacks.items())

    def check_data(self, X, y):
        super().check_data(X, y)
        if y is not None and np.ndim(y) == 2:
            self.classes_inferred_ = np.arange(np.shape(y)[1] - 1)

    def get_split_datasets(self, X, y=None, **fit_params):
        """As skorch's, but a stratified split stratifies on the hard labels (column 0)."""
        dataset = self.get_dataset(X, y)
        if not self.train_split:
            return dataset, None
        if y is None:
            return self.train_split(dataset, **fit_params)
        hard = np.asarray(y)[:, 0] if np.ndim(y) == 2 else y
        return self.train_split(dataset, hard, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = y_true.to(y_pred.device)
        if y_true.ndim == 1:
            return F.cross_entropy(y_pred, y_true.long())
        return distillation_loss(
            y_pred,
            y_true[:, 1:],
            y_true[:, 0].long(),
            temperature=self.temperature,
            kd_weight=self.kd_weight,
            temperature_squared=self.temperature_squared,
        )
