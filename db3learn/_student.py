"""The student: a skorch classifier trained with the knowledge-distillation loss."""

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring
from tqdm.auto import tqdm

__all__ = ["KDStudent", "distillation_loss"]


def distillation_loss(student_logits, teacher_logits, hard_labels, *, temperature, kd_weight=1.0, temperature_squared=True):
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
        Logits from boundary distances (``-inf`` allowed: probability 0).
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
        p_teacher = torch.softmax(teacher_logits / temperature, dim=1)
        log_q = torch.log_softmax(student_logits / temperature, dim=1)
        # xlogy gives 0 where the teacher's probability is 0 (an unreached class)
        kl = (torch.special.xlogy(p_teacher, p_teacher) - p_teacher * log_q).sum(dim=1).mean()
        scale = temperature**2 if temperature_squared else 1.0
        loss = loss + kd_weight * scale * kl
    return loss


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
    criterion : default=torch.nn.CrossEntropyLoss
        Kept so that skorch applies the softmax in ``predict_proba``; the
        loss itself is :func:`distillation_loss`.
    train_split : default=None
        No validation split by default. A skorch ``ValidSplit`` works,
        stratified ones too: they stratify on the teacher's hard labels, and
        ``valid_acc`` scores against them.
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
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        verbose=0,
        **kwargs,
    ):
        super().__init__(module, *args, criterion=criterion, train_split=train_split, verbose=verbose, **kwargs)
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.temperature_squared = temperature_squared

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
