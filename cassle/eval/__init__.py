"""Evaluation of frozen representations: features, probes, continual metrics, result files."""

from .features import extract_features
from .metrics import (
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forward_transfer,
    summarize,
)
from .probes import PROBES, knn_accuracy, linear_accuracy, ridge_accuracy
from .protocol import evaluate_after_task
from .report import ContinualReport, format_table, run_title

__all__ = [
    "extract_features",
    "knn_accuracy",
    "ridge_accuracy",
    "linear_accuracy",
    "PROBES",
    "average_accuracy",
    "average_forgetting",
    "backward_transfer",
    "forward_transfer",
    "summarize",
    "evaluate_after_task",
    "ContinualReport",
    "format_table",
    "run_title",
]
