"""What a fine-tuned model has to beat to count as having learned its task: the majority class and a frozen probe."""

import json
from pathlib import Path

import numpy as np

from .activations import content_means
from .finetune import batches
from .models import load_encoder, load_tokenizer, resolve_model, select_device
from .probing import linear_probe_accuracy
from .progress import progress
from .provenance import write_json


def majority_accuracy(train_labels, dev_labels) -> float:
    """Dev accuracy of always answering the most frequent training label.
    acc = mean[y_dev = argmax_c count_train(c)]"""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float(np.mean(np.asarray(dev_labels) == values[counts.argmax()]))


def pooled_layers(model, tokenizer, texts: list[str], max_length: int, batch_size: int, device,
                  desc: str = "frozen encoder") -> np.ndarray:
    """(layers, texts, width): each layer's mean over a text's word pieces ([CLS]/[SEP] and padding left out)."""
    import torch

    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    lengths = np.array([len(x) for x in encoded["input_ids"]])
    pooled = None
    with torch.inference_mode(), progress(total=len(texts), unit="text", desc=desc) as bar:
        for rows in batches(lengths, batch_size, None):
            padded = tokenizer.pad({key: [encoded[key][i] for i in rows] for key in
                                    ("input_ids", "attention_mask", "special_tokens_mask")}, return_tensors="pt")
            content = (padded["attention_mask"] * (1 - padded.pop("special_tokens_mask"))).to(device)
            states = model(**padded.to(device), output_hidden_states=True).hidden_states
            means = torch.stack(content_means(states, content)).cpu().numpy()
            if pooled is None:
                pooled = np.empty((len(states), len(texts), means.shape[-1]), dtype=np.float32)
            pooled[:, rows] = means
            bar.update(len(rows))
    return pooled


def task_baselines(model_spec: dict, task_file, out, settings: dict, threads: int, provenance: dict) -> None:
    """Write the task's majority-class dev accuracy and the best layer's dev accuracy of a linear probe on the frozen
    pre-trained encoder (mean vectors, fit on the training split): the bars a fine-tuned model must clear."""
    task = json.loads(Path(task_file).read_text())
    train, dev = task["train"], task["dev"]
    majority = majority_accuracy(train["label"], dev["label"])
    print(f"{len(train['text'])} training and {len(dev['text'])} dev texts; majority class: dev accuracy "
          f"{majority:.4f}", flush=True)
    resolved = resolve_model(model_spec["id"], model_spec.get("revision"))
    device = select_device(threads)
    model = load_encoder(resolved.path, model_spec.get("trust_remote_code", False)).to(device).eval()
    tokenizer = load_tokenizer(resolved.path)
    features = {split: pooled_layers(model, tokenizer, part["text"], settings["max_length"],
                                     settings["eval_batch_size"], device, f"frozen encoder, {split}")
                for split, part in (("train", train), ("dev", dev))}
    probe = []
    for layer, (X_train, X_dev) in enumerate(zip(features["train"], features["dev"])):
        probe.append(linear_probe_accuracy(X_train, train["label"], X_dev, dev["label"], l2=settings["probe_l2"],
                                           seed=settings["seed"], max_iter=settings["probe_iterations"]))
        print(f"frozen probe, layer {layer}: dev accuracy {probe[-1]:.4f}", flush=True)
    best = int(np.argmax(probe))
    write_json(out, {"provenance": {**provenance, "model_id": resolved.model_id, "model_revision": resolved.revision,
                                    "base_weights_sha256": resolved.weights_sha256, "settings": settings},
                     "majority_accuracy": majority, "frozen_probe_accuracy": probe, "frozen_probe_best_layer": best,
                     "n_train": len(train["text"]), "n_dev": len(dev["text"])})
    print(f"wrote {out}: majority {majority:.4f}, frozen probe {probe[best]:.4f} (layer {best})", flush=True)
