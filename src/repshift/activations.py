"""Activation extraction to HDF5, the file format, and its reader."""

import json
import queue
import threading
from pathlib import Path

import h5py
import numpy as np

from .errors import UserError
from .models import autocast, load_encoder, load_tokenizer, resolve_model, select_device
from .progress import progress
from .provenance import atomic_path

FORMAT_VERSION = 1
CHUNK_ROWS = 2048
RDCC_BYTES = 64 * 2**20
READ_BLOCK_ROWS = 16 * CHUNK_ROWS
DATASETS = {"tokens": ("hidden", "sentence_id", "word_index", "piece_id", "special", "pos_tag"),
            "sentences": ("cls", "mean", "sentence_id", "label", "n_tokens")}
LAYERED = ("tokens/hidden", "sentences/cls", "sentences/mean")
HALF_MAX = 65504.0


def tokenize_probe(tokenizer, words: list[list[str]], max_length: int, pairs: list[list[str]] | None = None):
    """Tokenize pre-split sentences, with `pairs` each as the pair it was fine-tuned on ([CLS] words [SEP] pair
    [SEP], truncated longest-first); return input ids, each piece's word index (in the sentence's words followed by
    its pair's; -1 for special tokens), how many sentences lost words, and the token type ids (None for a model
    without them)."""
    encoded = tokenizer(words, *([pairs] if pairs else []), is_split_into_words=True, truncation=True,
                        max_length=max_length)
    ids, word_index = encoded["input_ids"], []
    for i, sentence in enumerate(words):
        offsets = (0, len(sentence))
        word_index.append([-1 if w is None else w + offsets[s] for w, s in zip(encoded.word_ids(i),
                                                                               encoded.sequence_ids(i))])
    n_words = [len(sentence) + (len(pairs[i]) if pairs else 0) for i, sentence in enumerate(words)]
    truncated = sum(len({w for w in index if w >= 0}) < n for index, n in zip(word_index, n_words))
    return ids, word_index, truncated, encoded.get("token_type_ids")


def length_batches(lengths: np.ndarray, max_tokens: int):
    """Sentence indices sorted by length, grouped so each padded batch holds at most max_tokens."""
    order = np.argsort(lengths, kind="stable")
    batch, longest = [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if batch and longest_if_added * (len(batch) + 1) > max_tokens:
            yield batch
            batch, longest_if_added = [], lengths[i]
        batch.append(i)
        longest = longest_if_added
    if batch:
        yield batch


def content_means(hidden_states, content) -> list:
    """Each layer's mean over the word pieces marked in `content` (batch x length); rows with none give zeros."""
    import torch

    weights = content.float()
    weights /= weights.sum(1, keepdim=True).clamp(min=1)
    return [torch.einsum("btd,bt->bd", h.float(), weights) for h in hidden_states]


def padded_batch(ids: list, word_index: list, batch, pad_id: int, types: list | None = None):
    """One length-sorted batch as padded tensors: input ids, attention mask, the mask of word pieces, and the token
    type ids (None without `types`)."""
    import torch

    lengths = [len(ids[i]) for i in batch]
    input_ids = torch.full((len(batch), max(lengths)), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), max(lengths)), dtype=torch.long)
    content = torch.zeros((len(batch), max(lengths)), dtype=torch.bool)
    token_types = None if types is None else torch.zeros((len(batch), max(lengths)), dtype=torch.long)
    for row, (i, length) in enumerate(zip(batch, lengths)):
        input_ids[row, :length] = torch.as_tensor(ids[i])
        mask[row, :length] = 1
        content[row, :length] = torch.as_tensor(word_index[i]) >= 0
        if token_types is not None:
            token_types[row, :length] = torch.as_tensor(types[i])
    return input_ids, mask, content, token_types


class _Writer(threading.Thread):
    """Writes batches to the HDF5 datasets in a background thread, overlapping the forward passes."""

    def __init__(self, handle):
        super().__init__(daemon=True)
        self.handle, self.jobs, self.error = handle, queue.Queue(maxsize=4), None

    def run(self):
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    for name, start, values in job:
                        dataset = self.handle[name]
                        for layer, block in enumerate(values):
                            dataset[layer, start : start + len(block)] = block
                except Exception as exc:
                    self.error = exc

    def put(self, job):
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def close(self):
        self.jobs.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _create(handle, name, shape, dtype):
    chunks = (1, min(CHUNK_ROWS, shape[1]), shape[2]) if len(shape) == 3 else None
    return handle.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, fletcher32=bool(chunks))


def _check_half_range(token_states, model_id: str) -> None:
    """Refuse a float16 store of activations beyond float16's range (they would be stored as infinities); the
    token rows bound the [CLS] rows they hold and the means of them."""
    largest = max(float(h.abs().max()) for h in token_states)
    if largest > HALF_MAX:
        raise UserError(f"config key extract.dtype: float16 cannot hold the activations of {model_id} (|x| reaches "
                        f"{largest:,.0f}, float16 stops at {HALF_MAX:,.0f}); set extract.dtype to float32")


def extract(model_spec: dict, probe_file, out, settings: dict, threads: int, provenance: dict):
    """Run the encoder over a probe set; store every hidden layer's token, [CLS] and mean vectors."""
    import torch

    probe = json.loads(Path(probe_file).read_text())
    resolved = resolve_model(model_spec["id"], model_spec.get("revision"))
    device = select_device(threads)
    tokenizer = load_tokenizer(resolved.path)
    model = load_encoder(resolved.path, model_spec.get("trust_remote_code", False)).to(device).eval()
    ids, word_index, truncated, types = tokenize_probe(tokenizer, probe["words"], settings["max_length"],
                                                       probe.get("pairs"))
    lengths = np.array([len(x) for x in ids])
    batches = list(length_batches(lengths, settings["batch_tokens"]))
    order = np.concatenate(batches)
    n_layers, hidden = model.config.num_hidden_layers + 1, model.config.hidden_size
    n_tokens, n_sent = int(lengths.sum()), len(ids)
    tag_index = {t: i for i, t in enumerate(probe["tag_names"])}

    pieces = np.concatenate([ids[i] for i in order])
    words_of = np.concatenate([word_index[i] for i in order])
    tags = probe["tags"]
    pos = np.array([tag_index[tags[s][w]] if tags and w >= 0 and tags[s][w] is not None else -1
                    for s in order for w in word_index[s]], dtype=np.int16)
    print(f"{n_sent} sentences, {n_tokens} tokens, {truncated} truncated at {settings['max_length']} pieces, "
          f"{len(batches)} batches", flush=True)

    dtype = settings["dtype"]
    stored = getattr(torch, dtype)
    with atomic_path(out) as tmp, h5py.File(tmp, "w", rdcc_nbytes=RDCC_BYTES) as handle:
        for name, rows in (("tokens/hidden", n_tokens), ("sentences/cls", n_sent), ("sentences/mean", n_sent)):
            _create(handle, name, (n_layers, rows, hidden), dtype)
        handle["tokens/sentence_id"] = np.repeat(order, lengths[order]).astype(np.int32)
        handle["tokens/word_index"] = words_of.astype(np.int32)
        handle["tokens/piece_id"] = pieces.astype(np.int32)
        handle["tokens/special"] = words_of < 0
        handle["tokens/pos_tag"] = pos
        handle["sentences/sentence_id"] = order.astype(np.int32)
        labels = probe["labels"]
        handle["sentences/label"] = np.array([labels[i] if labels else -1 for i in order], dtype=np.int32)
        handle["sentences/n_tokens"] = lengths[order].astype(np.int32)
        handle.attrs.update({
            "format_version": FORMAT_VERSION,
            "provenance": json.dumps({**provenance, "model_id": resolved.model_id,
                                      "model_revision": resolved.revision, "weights_sha256": resolved.weights_sha256,
                                      "n_layers": n_layers, "hidden_size": hidden, "dtype": dtype,
                                      "truncated_sentences": int(truncated), "settings": settings},
                                     sort_keys=True),
            "tag_names": json.dumps(probe["tag_names"]),
            "label_names": json.dumps(probe["label_names"]),
            "complete": False,
        })
        writer = _Writer(handle)
        writer.start()
        token_at = sentence_at = 0
        try:
            with torch.inference_mode(), autocast(device), progress(total=n_tokens, unit="tok", mininterval=5) as bar:
                for batch in batches:
                    input_ids, mask, content, token_types = padded_batch(ids, word_index, batch,
                                                                         tokenizer.pad_token_id or 0, types)
                    typed = {} if token_types is None else {"token_type_ids": token_types.to(device)}
                    out_states = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), **typed,
                                       output_hidden_states=True).hidden_states
                    keep = mask.bool().to(device)
                    n_batch_tokens = int(keep.sum())
                    token_states = [h[keep] for h in out_states]
                    if stored is torch.float16:
                        _check_half_range(token_states, resolved.model_id)
                    writer.put([
                        ("tokens/hidden", token_at, [h.to(stored).cpu().numpy() for h in token_states]),
                        ("sentences/cls", sentence_at, [h[:, 0].to(stored).cpu().numpy() for h in out_states]),
                        ("sentences/mean", sentence_at,
                         [m.to(stored).cpu().numpy() for m in content_means(out_states, content.to(device))]),
                    ])
                    token_at += n_batch_tokens
                    sentence_at += len(batch)
                    bar.update(n_batch_tokens)
        finally:
            writer.close()
        if not all(np.isfinite(handle["sentences/mean"][-1]).all(axis=1)):
            raise UserError(f"{out}: non-finite activations in the top layer; the model "
                            f"{resolved.model_id} diverged: check its fine-tuning log")
        handle.attrs["complete"] = True


class Activations:
    """Read access to one extraction file: layer matrices, token and sentence metadata, provenance.

    The file is refused, in one line naming it and the rule that remakes it, when it is unreadable, incomplete,
    inconsistent, corrupt (checksummed chunks), holds non-finite activations, or when its provenance differs
    from `expect` (provenance key -> the value the consuming step requires).
    """

    def __init__(self, path, expect: dict | None = None):
        self.path = Path(path)
        try:
            self._h = h5py.File(self.path, "r")
        except OSError as exc:
            self._refuse(f"not a readable HDF5 file ({exc})")
        try:
            self._check(expect or {})
        except Exception:
            self._h.close()
            raise

    def _refuse(self, reason: str, remedy: str = "delete it and rerun the extract rule that makes it"):
        raise UserError(f"{self.path}: {reason}; {remedy}") from None

    def _check(self, expect: dict) -> None:
        attrs = self._h.attrs
        if attrs.get("format_version") != FORMAT_VERSION or not attrs.get("complete"):
            self._refuse("incomplete or unknown format")
        try:
            self.provenance = json.loads(attrs["provenance"])
            self.tag_names = json.loads(attrs["tag_names"])
            self.label_names = json.loads(attrs["label_names"])
            shapes = {f"{group}/{name}": self._h[f"{group}/{name}"].shape
                      for group, names in DATASETS.items() for name in names}
        except (KeyError, ValueError, OSError) as exc:
            self._refuse(f"damaged metadata ({type(exc).__name__}: {exc})")
        rows = {group: shapes[f"{group}/sentence_id"][0] for group in DATASETS}
        for name, shape in shapes.items():
            group = name.split("/")[0]
            wanted = ((self.provenance.get("n_layers"), rows[group], self.provenance.get("hidden_size"))
                      if name in LAYERED else (rows[group],))
            if shape != wanted:
                self._refuse(f"{name} has shape {shape}, the provenance and the other datasets say {wanted}")
        for key, value in expect.items():
            if self.provenance.get(key) != value:
                self._refuse(f"provenance {key} is {self.provenance.get(key)!r}, expected {value!r}")
        self.n_layers = shapes["tokens/hidden"][0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._h.close()

    def _read(self, name: str, layer: int | slice | None = None, rows: slice = slice(None)) -> np.ndarray:
        try:
            values = self._h[name][:] if layer is None else self._h[name][layer, rows].astype(np.float32, copy=False)
        except OSError as exc:
            self._refuse(f"corrupt data in {name} ({exc})")
        if layer is not None and not np.isfinite(values).all():
            self._refuse(f"non-finite activations in {name} layer {layer}",
                         "the model diverged: check its finetune log, then rerun finetune and extract")
        return values

    def token_meta(self, name: str) -> np.ndarray:
        return self._read(f"tokens/{name}")

    def sentence_meta(self, name: str) -> np.ndarray:
        return self._read(f"sentences/{name}")

    def tokens(self, layer: int, index: np.ndarray | None = None) -> np.ndarray:
        """Layer `layer`'s token matrix (n_tokens x d), or only the rows in `index`, read block by block so that
        memory holds the selection and one block, not the layer."""
        if index is None:
            return self._read("tokens/hidden", layer)
        n_rows, block = self._h["tokens/hidden"].shape[1], READ_BLOCK_ROWS
        order = np.argsort(index, kind="stable")
        wanted = np.asarray(index)[order]
        bounds = np.searchsorted(wanted, np.arange(0, n_rows + block, block))
        picked = np.empty((len(wanted), self._h["tokens/hidden"].shape[2]), dtype=np.float32)
        for start, a, b in zip(range(0, n_rows, block), bounds[:-1], bounds[1:]):
            picked[order[a:b]] = self._read("tokens/hidden", layer, slice(start, start + block))[wanted[a:b] - start]
        return picked

    def token_blocks(self, rows: np.ndarray):
        """Every layer's token rows `rows` (sorted), yielded as a list of (m, d) float32 arrays per CHUNK_ROWS
        of the file: memory holds one chunk of every layer, never a whole layer."""
        n_rows = self._h["tokens/hidden"].shape[1]
        bounds = np.searchsorted(rows, np.arange(0, n_rows + CHUNK_ROWS, CHUNK_ROWS))
        for start, a, b in zip(range(0, n_rows, CHUNK_ROWS), bounds[:-1], bounds[1:]):
            if b > a:
                block = self._read("tokens/hidden", slice(None), slice(start, start + CHUNK_ROWS))
                yield list(block[:, rows[a:b] - start])

    def words(self) -> tuple[np.ndarray, np.ndarray]:
        """Token rows that belong to words, and where each word starts among them (a word's pieces are contiguous)."""
        sentence, word = self.token_meta("sentence_id"), self.token_meta("word_index")
        rows = np.flatnonzero(word >= 0)
        key = sentence[rows].astype(np.int64) * (int(word.max()) + 1) + word[rows]
        return rows, np.flatnonzero(np.r_[True, key[1:] != key[:-1]])

    def word_vectors(self, layer: int) -> np.ndarray:
        """Layer `layer`'s word matrix: the mean of each word's pieces (Zhou & Srikumar's pooling)."""
        rows, starts = self.words()
        sums = np.add.reduceat(self.tokens(layer, rows).astype(np.float64), starts, axis=0)
        return sums / np.diff(np.r_[starts, len(rows)])[:, None]

    def sentences(self, layer: int, kind: str = "cls") -> np.ndarray:
        """Layer `layer`'s sentence matrix: [CLS] vectors (`cls`) or mean of word pieces (`mean`)."""
        return self._read(f"sentences/{kind}", layer)
