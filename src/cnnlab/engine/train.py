"""The training loop: dataset tensor -> index-slice batches -> model -> metrics and checkpoint.

Functions with explicit arguments, in the order they run: device, model, optimizer, one epoch,
evaluation, then `fit`, which ties them together and reports through the `log` callable it is given.
"""
import dataclasses
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cnnlab import CnnlabError
from cnnlab.data.batches import epoch_order, iterate_batches
from cnnlab.data.datasets import ImageDataset, load_training_dataset
from cnnlab.engine import checkpoint as ckpt
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.metrics import confusion_matrix, test_line
from cnnlab.models import count_parameters, create_model


def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is visible to this PyTorch build")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)


def build_model(name: str, dataset_info: dict, width=None) -> torch.nn.Module:
    """Build a registered model for the data described by ImageDataset.describe()."""
    return create_model(name, in_channels=dataset_info["in_channels"], num_classes=len(dataset_info["classes"]),
                        input_size=tuple(dataset_info["input_size"]), width=width)


def build_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
                                               steps_per_epoch=steps_per_epoch)


def train_one_epoch(model, batches, optimizer, scheduler, label_smoothing=0.0, memory_format=torch.contiguous_format,
                    progress=None) -> dict:
    """One pass over `batches`; returns the mean training loss, seconds and images/s."""
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    for images, labels in batches:
        images = images.contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().double().cpu() * len(labels)
        seen += len(labels)
        if progress is not None:
            progress.update(1)
            if progress.n % 20 == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.perf_counter() - start):,.0f}")
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum.item() / max(seen, 1), "train_seconds": seconds, "images_per_s": seen / seconds}


@torch.inference_mode()
def evaluate(model, images, labels, mean, std, num_classes, batch_size=1000,
             memory_format=torch.contiguous_format) -> dict:
    """Summed loss over the whole set divided by its size (exact with a short last batch)."""
    model.eval()
    loss_sum, predictions = 0.0, []
    for x, y in iterate_batches(images, labels, batch_size, mean, std):
        output = model(x.contiguous(memory_format=memory_format))
        loss_sum += F.cross_entropy(output, y, reduction="sum").item()
        predictions.append(output.argmax(1))
    predictions = torch.cat(predictions) if predictions else labels.new_zeros(0)
    correct = int((predictions == labels).sum())
    total = len(labels)
    return {"loss": loss_sum / max(total, 1), "correct": correct, "total": total,
            "accuracy": 100.0 * correct / max(total, 1),
            "confusion": confusion_matrix(labels, predictions, num_classes)}


def default_run_dir(config: TrainConfig, dataset_name: str) -> Path:
    return Path("runs") / f"{config.model}-{dataset_name}-{datetime.now():%Y%m%d-%H%M%S}"


def fit(config: TrainConfig, log=print, dataset: ImageDataset | None = None) -> dict:
    """Train `config.model` as configured; write config, metrics and checkpoint; return the summary."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device)
    if dataset is None:
        dataset, notice = load_training_dataset(config.dataset, config.data_dir)
        if notice:
            log(notice)
    dataset.to(device)
    data_info = dataset.describe()
    config = dataclasses.replace(config, dataset=dataset.name)
    run_dir = ckpt.prepare_run_dir(Path(config.out) if config.out else default_run_dir(config, dataset.name),
                                   config.overwrite)

    torch.manual_seed(config.seed)
    model = build_model(config.model, data_info, config.width)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    steps_per_epoch = -(-len(dataset.train_labels) // config.batch_size)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    ckpt.write_json(run_dir / ckpt.CONFIG, {**dataclasses.asdict(config), "device": str(device),
                                            "torch": torch.__version__, "threads": torch.get_num_threads()})
    log(f"Training {config.model} ({count_parameters(model):,} parameters) on {dataset.name} "
        f"({len(dataset.train_labels):,} train / {len(dataset.test_labels):,} test images), recipe {config.recipe}, "
        f"device {device}, run directory {run_dir}")

    history = []
    for epoch in range(1, config.epochs + 1):
        order = epoch_order(len(dataset.train_labels), config.seed, epoch, device)
        batches = iterate_batches(dataset.train_images, dataset.train_labels, config.batch_size,
                                  dataset.mean, dataset.std, order)
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                  disable=not config.progress, dynamic_ncols=True) as bar:
            train = train_one_epoch(model, batches, optimizer, scheduler, config.label_smoothing, memory_format, bar)
        test_start = time.perf_counter()
        test = evaluate(model, dataset.test_images, dataset.test_labels, dataset.mean, dataset.std,
                        dataset.num_classes, config.test_batch_size, memory_format)
        row = {"epoch": epoch, "train_loss": round(train["train_loss"], 6), "test_loss": round(test["loss"], 6),
               "test_accuracy": test["accuracy"], "seconds": round(train["train_seconds"] + time.perf_counter() - test_start, 3),
               "train_seconds": round(train["train_seconds"], 3), "images_per_s": round(train["images_per_s"], 1)}
        history.append(row)
        log(f"Epoch {epoch}: train loss {row['train_loss']:.4f}, {row['seconds']:.2f} s, {row['images_per_s']:,.0f} img/s")
        log(test_line(test["loss"], test["correct"], test["total"]))
        ckpt.append_metrics(run_dir, row)
        ckpt.save_checkpoint(run_dir / ckpt.CHECKPOINT, {
            "model": {"name": config.model, "width": config.width}, "dataset": data_info,
            "config": dataclasses.asdict(config), "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
            "epoch": epoch, "metrics": history})
    return {"run_dir": str(run_dir), "dataset": dataset.name, "parameters": count_parameters(model),
            "history": history, "test_accuracy": history[-1]["test_accuracy"]}


def load_trained(run_or_file) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a run from its checkpoint; returns (model in eval mode, checkpoint)."""
    payload = ckpt.load_checkpoint(run_or_file)
    try:
        model = build_model(payload["model"]["name"], payload["dataset"], payload["model"].get("width"))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError) as e:
        raise CnnlabError(f"{run_or_file}: checkpoint lacks {e}") from None
    except RuntimeError as e:
        raise CnnlabError(f"{run_or_file}: weights do not fit model {payload['model']['name']}: "
                          f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}") from None
    return model.eval(), payload
