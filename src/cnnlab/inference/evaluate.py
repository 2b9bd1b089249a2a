"""`cnnlab evaluate`: a trained run measured on a test set, with per-class accuracy and confusion matrix."""

from pathlib import Path

from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.metrics import format_confusion, per_class_accuracy, test_line
from cnnlab.engine.run import OpenOptions, open_run
from cnnlab.tables import format_table


def evaluate_run(
    run_dir: str | Path,
    dataset_name: str | None = None,
    data_dir: str | Path | None = None,
    batch_size: int = 1000,
    tta: bool = False,
    *,
    options: OpenOptions = OpenOptions(),
) -> str:
    """`run_dir`: a run folder, a checkpoint file or a model file (model.onnx), opened with `options`."""
    run = open_run(run_dir, options)
    dataset = run.load_dataset(dataset_name, data_dir)
    # Normalise with the training data's constants: that is what the model learnt on.
    result = evaluate(
        run.model,
        dataset.test_images,
        dataset.test_labels,
        mean=run.info.mean,
        std=run.info.std,
        num_classes=dataset.num_classes,
        batch_size=batch_size,
        tta=tta,
    )
    counts = result.confusion.sum(1).tolist()
    model = f"Model {run.model_name} trained on {run.info.name} (epoch {run.epoch})" if run.checkpoint else run.origin
    augmented = ", with test-time augmentation (5 views)" if tta else ""
    lines = [
        f"{model}, evaluated on the {dataset.name} test set{augmented}",
        test_line(result.loss, result.correct, result.total),
        "",
        format_table(
            ["class", "images", "accuracy %"],
            [
                [name, n, f"{acc:.2f}" if n else "-"]
                for name, n, acc in zip(  # "-": none to test
                    dataset.classes, counts, per_class_accuracy(result.confusion)
                )
            ],
        ),
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        format_confusion(result.confusion, dataset.classes),
    ]
    return "\n".join(lines)
