import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

train = pd.read_csv("./input/train.csv")
folds = pd.read_csv("./input/folds.csv").sort_values("row")
train["fold"] = folds["fold"].to_numpy()
train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)
train["cty"] = train["cty"].astype("category").cat.codes
features = ["x1", "x2", "x3", "cty"]
train[features] = train[features].fillna(-999)
fit_rows, valid_rows = train["fold"] != 0, train["fold"] == 0
model = RandomForestClassifier(n_estimators=30, random_state=0)
model.fit(train.loc[fit_rows, features], train.loc[fit_rows, "target"])
pred = model.predict_proba(train.loc[valid_rows, features])[:, 1]
print(f"Final Validation Performance: {roc_auc_score(train.loc[valid_rows, 'target'], pred)}")
