"""Fine-tuning an encoder with its task kind's head on a prepared task split, and dropping its top layers."""

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import methods
from .errors import UserError
from .models import autocast, load_tokenizer, resolve_model, select_device, training_precision
from .progress import progress
from .provenance import atomic_path, file_sha256, settings_hash, write_json
from .tables import write_csv
from .tasks import kind_of
from .uncertainty import DEV_BOOT, DEV_SEED, metric_replicates, replicates_text, sentence_resamples


# one kernel per step instead of one per tensor: 0.11 s -> 0.025 s per MiniLM step on 2 CPU cores
FUSED_ADAMW = ("cpu", "cuda")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encoder_layers(model) -> tuple[list, list, bool]:
    """The modules of an encoder's embedding stage (its embeddings, the projection to the hidden size of ELECTRA and
    ALBERT, the relative-position tables every block reads in DeBERTa and MPNet), its transformer blocks, and
    whether those are one block shared by every layer (ALBERT)."""
    base = model.base_model
    encoder = getattr(base, "encoder", None)
    stage = [getattr(base, "embeddings", None), getattr(base, "embeddings_project", None),
             getattr(encoder, "embedding_hidden_mapping_in", None), getattr(encoder, "relative_attention_bias", None),
             getattr(encoder, "rel_embeddings", None)]
    if getattr(encoder, "rel_embeddings", None) is not None:
        stage.append(getattr(encoder, "LayerNorm", None))  # DeBERTa normalises its relative embeddings with it
    stage = [module for module in stage if module is not None]
    if getattr(encoder, "layer", None) is not None and stage:
        return stage, list(encoder.layer), False
    if getattr(encoder, "albert_layer_groups", None) is not None and stage:
        return stage, list(encoder.albert_layer_groups), True
    raise UserError(f"{type(base).__name__}: freezing layers needs a BERT-like encoder (embeddings, then "
                    "encoder.layer or ALBERT's shared layer groups)")


def freeze_bottom(model, k: int) -> None:
    """Freeze the embedding stage and the bottom k transformer layers (k = 0 freezes nothing). A model whose layers
    share one block (ALBERT) freezes all of them or none."""
    if k == 0:
        return
    stage, blocks, shared = encoder_layers(model)
    n_layers = model.config.num_hidden_layers
    if k > n_layers:
        raise UserError(f"freeze_layers {k} exceeds the model's {n_layers} layers")
    if shared and k != n_layers:
        raise UserError(f"freeze_layers {k}: {type(model.base_model).__name__} runs one shared block at all "
                        f"{n_layers} layers, so its bottom {k} cannot be frozen alone; use 0 or {n_layers}")
    for module in [*stage, *(blocks if shared else blocks[:k])]:
        module.requires_grad_(False)


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, window: int = 50):
    """Index batches of similar length, so little compute goes to padding.
    Training (rng given): seeded shuffle, sort within windows of `window` batches, shuffle the batches; else by length."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order, span = rng.permutation(len(lengths)), batch_size * window
    windows = [chunk[np.argsort(lengths[chunk], kind="stable")] for chunk in np.split(order, range(span, len(order), span))]
    grouped = [w[i : i + batch_size] for w in windows for i in range(0, len(w), batch_size)]
    return [grouped[i] for i in rng.permutation(len(grouped))]


@dataclass
class DevScores:
    """A model's dev metrics (the kind's first deciding) and the deciding one's bootstrap over dev examples."""

    scores: dict
    replicates: list

    @classmethod
    def of(cls, kind, predicted: list, gold: list, resamples: list[np.ndarray]) -> "DevScores":
        """From per-batch predictions and gold answers, and the resamples of the units (dev_resamples)."""
        predicted, gold = np.concatenate(predicted), np.concatenate(gold)
        replicates = metric_replicates(kind.dev_metric, predicted, gold, resamples)
        return cls(kind.scores(predicted, gold), [round(float(r), 6) for r in replicates])


def dev_resamples(examples: list) -> list[np.ndarray]:
    """DEV_BOOT resamples of the dev examples, given each scored unit's example per batch: every model scored on
    the same dev units draws the same ones, so differences between models (or depths) are paired."""
    return sentence_resamples(np.concatenate(examples), DEV_BOOT, DEV_SEED)


def evaluate(model, tokenizer, kind, encoded, settings, device) -> DevScores:
    """The kind's dev metrics of the model on an encoded split."""
    import torch

    kind = kind.bind(encoded)
    model.eval()
    predicted, gold, examples, seen = [], [], [], 0
    with torch.inference_mode(), autocast(device):
        for rows in batches(encoded.lengths, settings["eval_batch_size"], None):
            batch = kind.collate(tokenizer, encoded, rows, device)
            labels = batch.pop("labels").cpu().numpy()
            predicted.append(kind.predicted(model(**batch).logits.float().cpu().numpy(), labels))
            gold.append(kind.gold(labels))
            examples.append(kind.unit_examples(labels) + seen)
            seen += len(rows)
    model.train()
    return DevScores.of(kind, predicted, gold, dev_resamples(examples))


def _scores(evaluation: dict) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in evaluation["scores"].items())


CHECKPOINT_DIR = ".checkpoint"


def checkpoint_fingerprint(settings: dict, seed: int, task_file, base_weights_sha256: str, provenance: dict) -> str:
    """What a checkpoint must have been made with to be resumed: everything that decides the weights."""
    return settings_hash({"settings": {k: v for k, v in settings.items() if k != "checkpoint_every"}, "seed": seed,
                          "task_sha256": file_sha256(task_file), "base_weights_sha256": base_weights_sha256,
                          "provenance": provenance})


def save_checkpoint(path: Path, fingerprint: str, model, optimizer, schedule, position: dict) -> None:
    """Model, optimizer, schedule and RNG state with `position` (epoch, curves), written atomically."""
    import torch

    state = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], **position}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, fingerprint: str) -> dict | None:
    """The saved training state; None (with the reason logged) when absent, unreadable or made otherwise."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        print(f"{path}: unreadable checkpoint ({type(exc).__name__}); starting from step 0", flush=True)
        return None
    if state.get("fingerprint") != fingerprint:
        print(f"{path}: checkpoint of other settings, data, model or code; starting from step 0", flush=True)
        return None
    return state


def finetune(model_spec: dict, task_file, out_dir, seed: int, settings: dict, threads: int, provenance: dict):
    """Fine-tune `model_spec` on the task in `task_file`; write weights, tokenizer and train_metrics.json.

    Training runs up to `epochs` epochs and stops early once the kind's deciding dev metric has not risen for
    `patience` epochs (None: never); the weights saved are those of the best dev epoch, with that epoch's metric
    resampled over dev examples. With `stop_fraction` (training dynamics) it stops after that fraction of the planned
    steps instead, with no evaluation or early stopping before, and saves the weights of that step: the same steps an
    uninterrupted run takes up to there, as the seed fixes the batches. Every `checkpoint_every` steps the training
    state goes to `out_dir/.checkpoint/`; a rerun with the same settings, data, model and code resumes from it and ends
    with the weights of an uninterrupted run.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    task = json.loads(Path(task_file).read_text())
    kind = kind_of(task)
    metric = kind.metrics[0]
    resolved = resolve_model(model_spec["id"], model_spec.get("revision"))
    seed_everything(seed)
    device = select_device(threads)
    settings = {**settings, "precision": training_precision(device, settings["precision"])}
    print(f"training steps in {settings['precision']} on {device.type}", flush=True)
    tokenizer = load_tokenizer(resolved.path)
    model = kind.load_model(resolved.path, model_spec.get("trust_remote_code", False), len(task["label_names"]))
    model.config.id2label = dict(enumerate(task["label_names"]))
    model.config.label2id = {name: i for i, name in enumerate(task["label_names"])}
    method = settings.get("method")
    if method is not None and settings["freeze_layers"]:
        raise UserError(f"config key methods.{method['name']}: a {method['kind']} fine-tune freezes the encoder its "
                        f"own way; it cannot also freeze the bottom {settings['freeze_layers']} layers "
                        "(finetune.freeze_layers)")
    freeze_bottom(model, settings["freeze_layers"])
    methods.prepare(model, method)
    model.to(device).train()

    train, dev = (kind.encode(tokenizer, task[split], settings["max_length"]) for split in ("train", "dev"))
    print(f"{kind.name}: {train.truncated} of {len(train.features)} training and {dev.truncated} of "
          f"{len(dev.features)} dev examples cut at {settings['max_length']} pieces", flush=True)
    rng = np.random.default_rng(seed)
    per_epoch = len(batches(train.lengths, settings["batch_size"], None))
    steps = settings["epochs"] * per_epoch
    stop_step = None if settings.get("stop_fraction") is None else max(1, round(settings["stop_fraction"] * steps))
    trainable = [p for p in model.parameters() if p.requires_grad]
    trained = sum(p.numel() for p in trainable)
    print(f"{trained:,} of {sum(p.numel() for p in model.parameters()):,} parameters train"
          + (f" ({method['name']}: {method['kind']})" if method else ""), flush=True)
    optimizer = torch.optim.AdamW(trainable, lr=settings["learning_rate"], weight_decay=settings["weight_decay"],
                                  fused=device.type in FUSED_ADAMW)
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings["warmup_ratio"] * steps), steps)

    out_dir = Path(out_dir)
    checkpoint = out_dir / CHECKPOINT_DIR / "state.pt"
    fingerprint = checkpoint_fingerprint(settings, seed, task_file, resolved.weights_sha256, provenance)
    first_epoch, losses, evaluations, best, started = 0, [], [], None, time.time()
    if (state := load_checkpoint(checkpoint, fingerprint)) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        rng.bit_generator.state = state["epoch_rng"]
        first_epoch, losses, evaluations, best = state["epoch"], state["losses"], state["evaluations"], state["best"]
        print(f"resuming from the checkpoint at step {len(losses)} of {steps}", flush=True)
    with progress(total=stop_step or steps, initial=len(losses), mininterval=5,
                  desc=f"finetune {task['provenance']['task']} seed {seed}") as bar:
        for epoch in range(first_epoch, settings["epochs"]):
            epoch_rng = rng.bit_generator.state
            for rows in batches(train.lengths, settings["batch_size"], rng)[len(losses) - epoch * per_epoch :]:
                if len(losses) == stop_step:
                    break
                with autocast(device, settings["precision"]):
                    loss = model(**kind.collate(tokenizer, train, rows, device)).loss
                if not torch.isfinite(loss):
                    raise UserError(f"fine-tuning diverged: loss {loss.item()} at step {len(losses)}; "
                                    "lower the task's finetune.learning_rate")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(round(loss.item(), 6))
                if len(losses) % settings["checkpoint_every"] == 0:
                    save_checkpoint(checkpoint, fingerprint, model, optimizer, schedule, {
                        "epoch": epoch, "epoch_rng": epoch_rng, "losses": losses, "evaluations": evaluations,
                        "best": best})
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                bar.update()
            if stop_step is not None:
                if len(losses) == stop_step:
                    break
                continue
            evaluations.append(asdict(evaluate(model, tokenizer, kind, dev, settings, device)))
            dev_metric = [evaluation["scores"][metric] for evaluation in evaluations]
            best_epoch = int(np.argmax(dev_metric))
            if best_epoch == epoch:
                best = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
            print(f"epoch {epoch + 1}: dev {_scores(evaluations[-1])} (best {metric} {dev_metric[best_epoch]:.4f}, "
                  f"epoch {best_epoch + 1})", flush=True)
            if settings["patience"] is not None and epoch - best_epoch >= settings["patience"]:
                print(f"stopped early: no dev improvement in {settings['patience']} epochs", flush=True)
                break
    if stop_step is None:
        best_epoch = int(np.argmax([evaluation["scores"][metric] for evaluation in evaluations]))
        model.load_state_dict(best)
        print(f"kept the weights of epoch {best_epoch + 1} of {len(evaluations)}: "
              f"dev {_scores(evaluations[best_epoch])}", flush=True)
    else:
        best_epoch, evaluations = 0, [asdict(evaluate(model, tokenizer, kind, dev, settings, device))]
        print(f"kept the weights of step {len(losses)} of {steps}: dev {_scores(evaluations[0])}", flush=True)
    dev_metric = [evaluation["scores"][metric] for evaluation in evaluations]
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    methods.save(model, staging)
    tokenizer.save_pretrained(staging)
    for item in staging.iterdir():
        os.replace(item, out_dir / item.name)
    staging.rmdir()
    write_json(out_dir / "train_metrics.json", {
        "provenance": {**provenance, "model_id": resolved.model_id, "model_revision": resolved.revision,
                       "base_weights_sha256": resolved.weights_sha256, "seed": seed, "settings": settings,
                       "device": device.type},
        "loss": losses,
        "metric": metric,
        "dev_metric": dev_metric,
        "dev_scores": [evaluation["scores"] for evaluation in evaluations],
        "dev_replicates": evaluations[best_epoch]["replicates"],
        "best_epoch": best_epoch + 1,
        "kind": kind.name,
        "n_train": len(train.features),
        "n_dev": len(dev.features),
        "planned_steps": steps,
        "trainable_parameters": trained,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "seconds": round(time.time() - started, 1),
    })
    shutil.rmtree(checkpoint.parent, ignore_errors=True)


def layer_drop(model_dir, task_file, out, settings: dict, threads: int, provenance: dict) -> None:
    """The dev metric of the fine-tuned model with its head applied to layer L-k's output, k = 0..L-1, with no
    re-tuning. One forward pass gives every depth: the first L-k blocks compute the same states with or without the
    blocks above them, and the kind's depth_head reads each layer."""
    import pandas as pd
    import torch

    task = json.loads(Path(task_file).read_text())
    kind = kind_of(task)
    device = select_device(threads)
    tokenizer = load_tokenizer(model_dir)
    model = kind.load_model(model_dir, labels=len(task["label_names"])).to(device).eval()
    head = kind.depth_head(model, Path(model_dir) / "model.safetensors")
    n_blocks = model.config.num_hidden_layers
    dev = kind.encode(tokenizer, task["dev"], settings["max_length"])
    kind = kind.bind(dev)
    predicted, gold, examples, seen = [[] for _ in range(n_blocks)], [], [], 0
    with torch.inference_mode(), autocast(device):
        for rows in batches(dev.lengths, settings["eval_batch_size"], None):
            batch = kind.collate(tokenizer, dev, rows, device)
            labels = batch.pop("labels").cpu().numpy()
            states = model.base_model(**kind.encoder_inputs(batch), output_hidden_states=True).hidden_states
            for dropped in range(n_blocks):
                predicted[dropped].append(kind.predicted(head(states[n_blocks - dropped], batch), labels))
            gold.append(kind.gold(labels))
            examples.append(kind.unit_examples(labels) + seen)
            seen += len(rows)
    rows, resamples = [], dev_resamples(examples)
    for dropped in range(n_blocks):
        scored = DevScores.of(kind, predicted[dropped], gold, resamples)
        rows.append({"layers_dropped": dropped, "layers_kept": n_blocks - dropped, "metric": kind.metrics[0],
                     "dev_metric": scored.scores[kind.metrics[0]],
                     "replicates": replicates_text(scored.replicates)})
        print(f"top {dropped} layers dropped: dev {_scores(asdict(scored))}", flush=True)
    write_csv(pd.DataFrame(rows).assign(**provenance), out)
