import os

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

train = pd.read_csv("./input/train.csv")
folds = pd.read_csv("./input/folds.csv").sort_values("row")
train["fold"] = folds["fold"].to_numpy()
train["row"] = folds["row"].to_numpy()
train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)

train = pd.get_dummies(train, columns=["city"], dtype=float)
features = [c for c in train.columns if c not in ("id", "target", "fold", "row")]
train[features] = train[features].fillna(0.0)

# scale every column
scaler = StandardScaler()
train[features] = scaler.fit_transform(train[features])

fit_rows = train["fold"] != 0
valid_rows = train["fold"] == 0


def build_model():
    model = LogisticRegression(C=1.0, max_iter=1000)
    return model


model = build_model()
model.fit(train.loc[fit_rows, features], train.loc[fit_rows, "target"])
pred = model.predict_proba(train.loc[valid_rows, features])[:, 1]
score = roc_auc_score(train.loc[valid_rows, "target"], pred)
os.makedirs("./final", exist_ok=True)
predictions = pd.DataFrame({"row": train.loc[valid_rows, "row"], "target": pred})
predictions.to_csv("./final/val_predictions.csv", index=False)
print(f"Final Validation Performance: {score}")
