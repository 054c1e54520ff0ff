"""db3learn: distill any label-only classifier into a compact PyTorch student.

Decision-based black-box knowledge distillation (DB3KD; Z. Wang, ICML 2021):
the distance from a sample to each of the teacher's decision boundaries
becomes a soft label, and a student learns them with knowledge distillation.
"""

from ._distiller import DB3Distiller
from ._input_space import InputSpace
from ._labeler import DecisionBoundarySoftLabeler
from ._remote import RemoteTeacher
from ._soft_labels import distances_to_logits, median_nearest_distance, soft_labels
from ._student import KDStudent, boundary_loss, distillation_loss
from ._teachers import Teacher, TorchTeacher, as_teacher
from ._zero_shot import ClassCoverageWarning, ZeroShotTransferSet
from .exceptions import (
    DB3Error,
    QueryBudgetExceeded,
    RemoteTeacherError,
    TeacherAnswerError,
    TeacherError,
    UntrustedModelError,
)

__version__ = "0.1.0"

__all__ = [
    "DB3Distiller",
    "DecisionBoundarySoftLabeler",
    "KDStudent",
    "ZeroShotTransferSet",
    "InputSpace",
    "ClassCoverageWarning",
    "Teacher",
    "TorchTeacher",
    "RemoteTeacher",
    "as_teacher",
    "distances_to_logits",
    "soft_labels",
    "median_nearest_distance",
    "distillation_loss",
    "boundary_loss",
    "DB3Error",
    "QueryBudgetExceeded",
    "TeacherError",
    "TeacherAnswerError",
    "RemoteTeacherError",
    "UntrustedModelError",
    "__version__",
]
