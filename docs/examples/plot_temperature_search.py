"""
Search the temperature with GridSearchCV
========================================

The temperature ``T`` of the soft labels ``softmax(-d / T)`` is DB3KD's main hyper-parameter.
:class:`~db3learn.DB3Distiller` is a scikit-learn estimator, so
:class:`~sklearn.model_selection.GridSearchCV` searches it. Without ``y`` the search scores
each candidate by **fidelity** to the teacher. The clones the search makes share the teacher
wrapper and its caches of answers and boundary distances, so searching 4 temperatures x 3
folds costs about as many queries as labelling the data once. The temperature shapes the soft
labels of the transfer set, so the search below trains on it alone (``queried_rows=False``,
the paper's DB3KD, 15 epochs): quicker, and the temperature's effect is not diluted by the
queried rows' hard labels.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from db3learn import DB3Distiller, Teacher

torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
teacher = Teacher(LogisticRegression(max_iter=1000).fit(X[:1000], y[:1000]))
X_transfer = X[1000:1300]

# %%
# One fit, to see what a fit costs
DB3Distiller(teacher, queried_rows=False, max_epochs=15, random_state=0).fit(X_transfer)
one_fit = teacher.n_queries
print(f"queries of one fit: {one_fit:,}")

# %%
# The search: 4 temperatures x 3 folds = 12 fits, plus the refit
temperatures = [0.1, 0.3, 1.0, 3.0]
search = GridSearchCV(
    DB3Distiller(teacher, queried_rows=False, max_epochs=15, random_state=0), {"temperature": temperatures}, cv=3
)
search.fit(X_transfer)
print(f"best temperature: {search.best_params_['temperature']}")
print(f"queries of the whole search: {teacher.n_queries - one_fit:,} (cache hits: {teacher.n_cache_hits:,})")

# %%
# Each fold's distiller labels its rows and searches their boundary distances; both were
# cached by the first fit, in the teacher wrapper that every clone shares, so the whole
# search asks the teacher (almost) nothing new.

scores = search.cv_results_["mean_test_score"]
errors = search.cv_results_["std_test_score"]
fig, ax = plt.subplots(figsize=(5, 3))
ax.errorbar(temperatures, scores, yerr=errors, marker="o", capsize=3)
ax.set_xscale("log")
ax.set_xlabel("temperature T (a distance, in pixel units)")
ax.set_ylabel("fidelity (3-fold mean)")
ax.set_title("GridSearchCV over the temperature")
fig.tight_layout()
plt.show()
