"""Evaluation: the summed loss over a whole set divided by its size (exact with a short last batch),
accuracy and the confusion matrix; optionally with test-time augmentation, and sharded under DDP."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.data.augment import one_pixel_shifts
from cnnlab.data.batches import iterate_batches, normalised_black
from cnnlab.data.datasets import PerChannel
from cnnlab.engine.distributed import SINGLE_PROCESS, DistContext
from cnnlab.engine.metrics import confusion_matrix


@dataclass
class Evaluation:
    loss: float
    correct: int
    total: int
    confusion: torch.Tensor  # (true class, predicted class) counts
    local_total: int  # images this rank evaluated (all of them without DDP)

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.total, 1)


def _log_probabilities(
    model: torch.nn.Module,
    x: torch.Tensor,
    tta: bool,
    background: torch.Tensor,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    if not tta:
        return model(x)
    # The log of the mean probability: cross_entropy's log_softmax leaves it as it is.
    views = [v.contiguous(memory_format=memory_format) for v in one_pixel_shifts(x, background)]
    return torch.stack([F.softmax(model(v).float(), 1) for v in views]).mean(0).log()


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: PerChannel,
    std: PerChannel,
    num_classes: int,
    batch_size: int = 1000,
    memory_format: torch.memory_format = torch.contiguous_format,
    dist: DistContext = SINGLE_PROCESS,
    tta: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> Evaluation:
    """Evaluate `model` on uint8 `images`, normalised with the training data's `mean` and `std`.

    With `tta` the prediction is the mean of the softmax over the image and its four one-pixel shifts.
    Under DDP each rank evaluates every world-th image and the sums are all-reduced: every image is
    counted once, however the set divides."""
    model.eval()
    images, labels = images[dist.rank :: dist.world], labels[dist.rank :: dist.world]
    loss_sum = torch.zeros((), dtype=torch.float64, device=labels.device)
    batches: list[torch.Tensor] = []
    background = normalised_black(mean, std).to(labels.device)  # black, what the shifts bring in
    for x, y in iterate_batches(images, labels, batch_size=batch_size, mean=mean, std=std, memory_format=memory_format):
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = _log_probabilities(model, x, tta, background, memory_format).float()
        loss_sum += F.cross_entropy(output, y, reduction="sum")
        batches.append(output.argmax(1))
    predictions = torch.cat(batches) if batches else labels.new_zeros(0)
    local_total = len(labels)
    loss, correct, total = dist.sum(loss_sum.item(), float((predictions == labels).sum()), float(local_total))
    return Evaluation(
        loss / max(total, 1),
        int(correct),
        int(total),
        dist.sum_tensor(confusion_matrix(labels, predictions, num_classes)),
        local_total,
    )
