"""What a fine-tuned model has to beat to count as having learned its task: the trivial answer (the majority class)
and a probe on the frozen encoder, each scored with the kind's dev metric."""

import json
from pathlib import Path

import numpy as np

from .finetune import batches
from .models import load_encoder, load_tokenizer, resolve_model, select_device
from .progress import progress
from .provenance import write_json
from .tasks import kind_of


FROZEN_PROBE_UNITS = 20000  # training units (examples, or words) the frozen probe fits on at most


def frozen_units(model, tokenizer, kind, encoded, rows: np.ndarray, batch_size: int, device,
                 desc: str = "frozen encoder") -> tuple[np.ndarray, np.ndarray]:
    """(layers, units, width) and the gold answer of each unit, over the examples `rows`: each layer's vectors of
    the units the kind scores (an example's mean content piece; a word's first piece)."""
    import torch

    added = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
             tokenizer.pad_token_id}
    special_ids = torch.as_tensor(sorted(added - {None}), device=device)
    per_batch, gold = [], []
    with torch.inference_mode(), progress(total=len(rows), unit="example", desc=desc) as bar:
        for chunk in batches(encoded.lengths[rows], batch_size, None):
            batch = kind.collate(tokenizer, encoded, rows[chunk], device)
            labels = batch.pop("labels")
            states = model(**kind.encoder_inputs(batch), output_hidden_states=True).hidden_states
            batch["labels"] = labels
            per_batch.append([kind.units(h, batch, special_ids) for h in states])
            gold.append(kind.gold(labels.cpu().numpy()))
            bar.update(len(chunk))
    return np.stack([np.concatenate(layer) for layer in zip(*per_batch)]), np.concatenate(gold)


def unit_capped(kind, encoded, cap: int, seed: int) -> np.ndarray:
    """A seeded sample of examples, in order, holding at most `cap` scored units (at least one example)."""
    order = np.random.default_rng(seed).permutation(len(encoded.features))
    counts = np.array([kind.gold(np.asarray(target)).size for target in encoded.targets])
    keep = max(1, int(np.searchsorted(np.cumsum(counts[order]), cap, side="right")))
    return np.sort(order[:keep])


def labelled_gold(tokenizer, kind, encoded, batch_size: int) -> np.ndarray:
    """The gold answer of every unit of a split, read from its labels without a forward pass."""
    import torch

    return np.concatenate([kind.gold(kind.collate(tokenizer, encoded, rows, torch.device("cpu"))["labels"].numpy())
                           for rows in batches(encoded.lengths, batch_size, None)])


def task_baselines(model_spec: dict, task_file, out, settings: dict, threads: int, provenance: dict) -> None:
    """Write the task's trivial answer's dev metric and the best layer's dev metric of a linear probe on the frozen
    pre-trained encoder (the units its kind scores: mean vectors of examples, first pieces of words; fit on at most
    FROZEN_PROBE_UNITS of the training split's): the bars a fine-tuned model must clear. A kind without a frozen
    probe (its frozen_probe_reason) records the reason instead."""
    task = json.loads(Path(task_file).read_text())
    kind = kind_of(task)
    resolved = resolve_model(model_spec["id"], model_spec.get("revision"))
    tokenizer = load_tokenizer(resolved.path)
    encoded = {split: kind.encode(tokenizer, task[split], settings["max_length"]) for split in ("train", "dev")}
    metric, probe, best = kind.metrics[0], [], None
    if kind.frozen_probe_reason:
        gold = {split: labelled_gold(tokenizer, kind.bind(encoded[split]), encoded[split], settings["eval_batch_size"])
                for split in encoded}
        print(f"{kind.name}: no frozen probe: {kind.frozen_probe_reason}", flush=True)
    else:
        device = select_device(threads)
        model = load_encoder(resolved.path, model_spec.get("trust_remote_code", False)).to(device).eval()
        rows = {"train": unit_capped(kind, encoded["train"], FROZEN_PROBE_UNITS, settings["seed"]),
                "dev": np.arange(len(encoded["dev"].features))}
        features, gold = {}, {}
        for split in ("train", "dev"):
            features[split], gold[split] = frozen_units(model, tokenizer, kind.bind(encoded[split]), encoded[split],
                                                        rows[split], settings["eval_batch_size"], device,
                                                        f"frozen encoder, {split}")
        for layer, (X_train, X_dev) in enumerate(zip(features["train"], features["dev"])):
            probe.append(kind.frozen_probe(X_train, gold["train"], X_dev, gold["dev"], settings))
            print(f"frozen probe, layer {layer}: dev {metric} {probe[-1]:.4f}", flush=True)
        best = int(np.nanargmax(probe))
    trivial = kind.trivial(gold["train"], gold["dev"])
    print(f"{kind.name}: {len(gold['train'])} training units, {len(gold['dev'])} dev units; {kind.trivial_name}: "
          f"dev {metric} {trivial:.4f}", flush=True)
    write_json(out, {"provenance": {**provenance, "model_id": resolved.model_id, "model_revision": resolved.revision,
                                    "base_weights_sha256": resolved.weights_sha256, "settings": settings},
                     "metric": metric, "trivial_name": kind.trivial_name, "trivial": trivial, "frozen_probe": probe,
                     "frozen_probe_best_layer": best, "frozen_probe_reason": kind.frozen_probe_reason,
                     "n_train": len(gold["train"]), "n_dev": len(gold["dev"])})
    frozen = f"frozen probe {probe[best]:.4f} (layer {best})" if probe else "no frozen probe"
    print(f"wrote {out}: {kind.trivial_name} {trivial:.4f}, {frozen}", flush=True)
