"""Evaluation metrics and their plain-text tables."""

from collections.abc import Sequence

import torch

from cnnlab.tables import format_table


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(true class, predicted class) counts."""
    flat = targets.to(torch.int64) * num_classes + predictions.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    totals = confusion.sum(1).clamp(min=1)
    return (confusion.diag().double() / totals * 100).tolist()


def test_line(loss: float, correct: int, total: int) -> str:
    """The lecture's evaluation line, to the character."""
    return f"Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{total} ({100.0 * correct / total:.2f}%)"


def format_confusion(confusion: torch.Tensor, classes: Sequence[str]) -> str:
    headers = ["true \\ predicted"] + list(classes)
    rows = [[name] + confusion[i].tolist() for i, name in enumerate(classes)]
    return format_table(headers, rows)
