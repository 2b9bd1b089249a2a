"""`cnnlab evaluate`: a trained run measured on a test set, with per-class accuracy and confusion matrix."""
from cnnlab import CnnlabError
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.metrics import format_confusion, per_class_accuracy, test_line
from cnnlab.engine.train import evaluate, load_trained, run_data_dir
from cnnlab.tables import format_table


def evaluate_run(run, dataset_name=None, data_dir=None, batch_size=1000, tta=False) -> str:
    model, payload = load_trained(run)
    trained_on = payload["dataset"]
    own = dataset_name in (None, trained_on["name"])
    dataset = load_dataset(dataset_name or trained_on["name"], run_data_dir(payload, data_dir) if own else data_dir)
    if (dataset.in_channels, list(dataset.input_size), dataset.num_classes) != \
            (trained_on["in_channels"], trained_on["input_size"], len(trained_on["classes"])):
        raise CnnlabError(f"dataset {dataset.name} ({dataset.in_channels}x{dataset.input_size[0]}x{dataset.input_size[1]}, "
                          f"{dataset.num_classes} classes) does not fit the model trained on {trained_on['name']}")
    # Normalise with the training data's constants: that is what the model learnt on.
    result = evaluate(model, dataset.test_images, dataset.test_labels, trained_on["mean"], trained_on["std"],
                      dataset.num_classes, batch_size, tta=tta)
    per_class = per_class_accuracy(result["confusion"])
    counts = result["confusion"].sum(1).tolist()
    lines = [f"Model {payload['model']['name']} trained on {trained_on['name']} (epoch {payload.get('epoch')}), "
             f"evaluated on the {dataset.name} test set" + (", with test-time augmentation (5 views)" if tta else ""),
             test_line(result["loss"], result["correct"], result["total"]), "",
             format_table(["class", "images", "accuracy %"],
                          [[name, n, f"{acc:.2f}"] for name, n, acc in zip(dataset.classes, counts, per_class)]), "",
             "Confusion matrix (rows: true class, columns: predicted):",
             format_confusion(result["confusion"], dataset.classes)]
    return "\n".join(lines)
