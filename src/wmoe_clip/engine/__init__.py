"""Training, zero-shot evaluation and prediction, with MLflow tracking and an optional feature cache.

Heavy dependencies (torch, mlflow, matplotlib) are imported by the submodules that need them, so
importing the package stays cheap for the command line.
"""
