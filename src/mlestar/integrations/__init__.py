"""Bridges to services outside mlestar: MLflow tracking (a subscriber of the run's event bus) and
Kaggle (competitions downloaded as local folders, submissions uploaded).

Each lives in its own module and imports its client package (``mlestar[mlflow]``,
``mlestar[kaggle]``) only when used.
"""
