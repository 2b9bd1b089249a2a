"""The test images behind one cell of a confusion matrix (true class t, predicted class p), most confident first,
each with its top 3: for the lab's clickable matrix and `cnnlab evaluate RUN --errors T:P` (a PNG sheet).

Works for every run: digits, CIFAR and folders of your own images (class names, colour)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.batches import iterate_batches
from cnnlab.data.datasets import DatasetInfo, ImageDataset
from cnnlab.engine.run import OpenOptions, open_run
from cnnlab.plotting import pyplot, save_figure

TOP_K = 3
SHEET_LIMIT = 48  # images drawn on one sheet (the most confident); the title says how many the cell holds


@dataclass
class Example:
    index: int  # in the test set
    top: list[tuple[int, float]]  # the TOP_K most probable classes (index, probability), most probable first


@dataclass
class ConfusionCell:
    true: int
    predicted: int
    classes: list[str]
    examples: list[Example]  # most confident (in `predicted`) first

    def describe(self) -> str:
        """The cell in words, an empty one included."""
        t, p, n = self.classes[self.true], self.classes[self.predicted], len(self.examples)
        if not n:
            return f"no test image of class {t} was {'classified right' if t == p else f'predicted as {p}'}"
        images = f"{n:,} test image{'s' if n != 1 else ''} of class {t} {'were' if n != 1 else 'was'}"
        return f"{images} {'classified right' if self.true == self.predicted else f'predicted as {p}'}"


@torch.inference_mode()
def probabilities_of_test_set(model: torch.nn.Module, dataset: ImageDataset, info: DatasetInfo) -> torch.Tensor:
    """(N, classes) softmax probabilities of every test image, normalised with the training data's constants,
    in batches (a deep net's activations for 10,000 images at once run to GBs)."""
    model.eval()
    batches = iterate_batches(dataset.test_images, dataset.test_labels, batch_size=1000, mean=info.mean, std=info.std)
    outputs = [model(x).float().softmax(1) for x, _ in batches]
    return torch.cat(outputs) if outputs else torch.zeros(0, info.num_classes)


def confusion_cell(
    probabilities: torch.Tensor, labels: torch.Tensor, *, true: int, predicted: int, classes: Sequence[str]
) -> ConfusionCell:
    """The images of class `true` predicted as `predicted`, the most confident in that prediction first."""
    for name, value in (("true", true), ("predicted", predicted)):
        if not 0 <= value < len(classes):
            raise CnnlabError(f"{name} class {value} is out of range: the classes are 0 to {len(classes) - 1}")
    chosen = probabilities.argmax(1)
    members = ((labels == true) & (chosen == predicted)).nonzero().flatten()
    confidence = probabilities[members, predicted]
    order = sorted(range(len(members)), key=lambda i: (-confidence[i].item(), members[i].item()))
    values, indices = probabilities[members].topk(min(TOP_K, probabilities.shape[1]), dim=1)
    examples = [
        Example(int(members[i]), [(int(c), round(float(v), 6)) for c, v in zip(indices[i], values[i])]) for i in order
    ]
    return ConfusionCell(true, predicted, list(classes), examples)


def parse_cell(text: str, classes: Sequence[str]) -> tuple[int, int]:
    """ "T:P" -> (true, predicted): each a class index or a class name ("4:9", "cat:dog")."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(parts):
        raise CnnlabError(f"--errors takes TRUE:PREDICTED, two classes such as 4:9, got {text!r}")
    names = [str(c) for c in classes]

    def one(part: str) -> int:
        if part in names:
            return names.index(part)
        if part.isdigit() and int(part) < len(names):
            return int(part)
        listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        raise CnnlabError(
            f"--errors: no class {part!r}; the classes are {listed} (or their indices 0 to {len(names) - 1})"
        )

    return one(parts[0]), one(parts[1])


def run_cell(
    run: str | Path,
    cell: str,
    *,
    dataset_name: str | None = None,
    data_dir: str | Path | None = None,
    options: OpenOptions = OpenOptions(),
) -> tuple[ConfusionCell, ImageDataset]:
    """The confusion cell "T:P" of a run on its own test set (or on `dataset_name`'s, of the same classes)."""
    saved = open_run(run, options)
    dataset = saved.load_dataset(dataset_name, data_dir)
    true, predicted = parse_cell(cell, dataset.classes)
    probabilities = probabilities_of_test_set(saved.model, dataset, saved.info)
    return confusion_cell(
        probabilities, dataset.test_labels, true=true, predicted=predicted, classes=dataset.classes
    ), dataset


def cell_sheet(cell: ConfusionCell, dataset: ImageDataset, out: Path) -> Path:
    """The cell's images (the SHEET_LIMIT most confident) as a PNG grid, each titled with its top 3."""
    if not cell.examples:
        raise CnnlabError(f"{cell.describe()}: there is nothing to draw")
    shown = cell.examples[:SHEET_LIMIT]
    cols = min(8, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(1.75 * cols, 2.05 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, example in zip(axes.flat, shown):
        picture = dataset.test_images[example.index].permute(1, 2, 0).numpy()
        ax.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray")
        ax.set_title(
            f"#{example.index}\n" + "\n".join(f"{cell.classes[c]} {p:.1%}" for c, p in example.top), fontsize=7
        )
    more = f" (the {len(shown)} most confident shown)" if len(shown) < len(cell.examples) else ""
    fig.suptitle(f"{cell.describe()}{more}; most confident first, each with its top {TOP_K}", fontsize=9)
    return save_figure(fig, out)
