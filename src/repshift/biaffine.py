"""Dozat & Manning's (2017) deep biaffine dependency parser head on a transformer encoder: each word, read at its
first piece, scores every candidate head (the other words' first pieces, and position 0, [CLS] or <s>, standing for
the root) with a biaffine form, and the relation of an arc with a second one.

  arc:      s[i, j] = d_i^T U h_j + h_j^T u            d = MLP_dep(x), h = MLP_head(x), 500 units
  relation: r[i, j] = d'_i^T W_r h'_j + V [d'_i; h'_j] + b   (one W_r per relation), 100 units

The MLPs are one linear layer, leaky ReLU (0.1) and dropout 0.33, their sizes and activations those of the
authors' parser. Training adds the cross-entropy of each word's gold head over its candidates to that of its gold
relation at the gold head; prediction takes each word's best-scoring head (greedy, not a maximum spanning tree)
and the best relation at it. The encoder saves as transformers saves it, so extraction reads the fine-tuned
encoder like any other; the head goes beside it in HEAD_FILE with its sizes in HEAD_CONFIG."""

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from .tasks import IGNORED

HEAD_FILE, HEAD_CONFIG = "biaffine_head.safetensors", "biaffine_head.json"


def _mlp(hidden: int, size: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, size), nn.LeakyReLU(0.1), nn.Dropout(dropout))


class BiaffineHead(nn.Module):
    def __init__(self, hidden: int, relations: int, arc_size: int = 500, relation_size: int = 100,
                 dropout: float = 0.33):
        super().__init__()
        self.settings = {"hidden": hidden, "relations": relations, "arc_size": arc_size,
                         "relation_size": relation_size, "dropout": dropout}
        self.arc_dep, self.arc_head = _mlp(hidden, arc_size, dropout), _mlp(hidden, arc_size, dropout)
        self.relation_dep, self.relation_head = (_mlp(hidden, relation_size, dropout) for _ in range(2))
        self.arc_weight = nn.Parameter(torch.zeros(arc_size, arc_size))
        self.arc_prior = nn.Linear(arc_size, 1, bias=False)
        self.relation_weight = nn.Parameter(torch.zeros(relations, relation_size, relation_size))
        self.relation_linear = nn.Linear(2 * relation_size, relations)

    def arcs(self, hidden: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
        """(batch, pieces, pieces) scores of piece i hanging from piece j; a j that is neither a word's first piece
        nor the root (word_index < 0), and j = i, get the dtype's lowest value."""
        dep, head = self.arc_dep(hidden), self.arc_head(hidden)
        scores = dep @ self.arc_weight @ head.transpose(1, 2) + self.arc_prior(head).transpose(1, 2)
        pieces = hidden.shape[1]
        allowed = (word_index >= 0)[:, None, :] & ~torch.eye(pieces, dtype=torch.bool, device=hidden.device)
        return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)

    def relations(self, hidden: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """(batch, pieces, relations) scores of piece i's relation to the piece heads[b, i] it hangs from."""
        dep = self.relation_dep(hidden)
        head = self.relation_head(hidden)
        head = head.gather(1, heads.clamp(min=0).unsqueeze(-1).expand(-1, -1, head.shape[-1]))
        return (torch.einsum("bsd,rde,bse->bsr", dep, self.relation_weight, head)
                + self.relation_linear(torch.cat([dep, head], -1)))

    def forward(self, hidden: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
        """Arc scores with, after them on the last axis, the relation scores at each piece's best head."""
        arcs = self.arcs(hidden, word_index)
        return torch.cat([arcs, self.relations(hidden, arcs.argmax(-1))], -1)


def head_positions(word_index: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """The piece position of each head word (0: the root's position), IGNORED where the head is."""
    lookup = torch.zeros(word_index.shape[0], int(word_index.max()) + 1, dtype=torch.long, device=word_index.device)
    rows, positions = torch.nonzero(word_index >= 0, as_tuple=True)
    lookup[rows, word_index[rows, positions]] = positions
    found = lookup.gather(1, heads.clamp(min=0, max=lookup.shape[1] - 1))
    return torch.where(heads == IGNORED, IGNORED, found)


class BiaffineParser(nn.Module):
    """An encoder with a BiaffineHead; labels are (batch, pieces, 3): each first piece's word number, its head
    word (0: the root) and its relation, IGNORED where not scored."""

    def __init__(self, encoder, head: BiaffineHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    @property
    def base_model(self):
        return self.encoder

    @property
    def config(self):
        return self.encoder.config

    def forward(self, word_index: torch.Tensor, labels: torch.Tensor | None = None, **inputs) -> SimpleNamespace:
        hidden = self.encoder(**inputs).last_hidden_state
        if labels is None:
            return SimpleNamespace(loss=None, logits=self.head(hidden, word_index))
        gold = head_positions(word_index, labels[..., 1])
        scored = gold != IGNORED
        arcs = self.head.arcs(hidden, word_index)
        relations = self.head.relations(hidden, gold)
        loss = (nn.functional.cross_entropy(arcs[scored].float(), gold[scored])
                + nn.functional.cross_entropy(relations[scored].float(), labels[..., 2][scored]))
        return SimpleNamespace(loss=loss, logits=torch.cat([arcs, relations], -1))

    def save_pretrained(self, path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(path, safe_serialization=safe_serialization)
        tensors = {name: tensor.contiguous() for name, tensor in self.head.state_dict().items()}
        save_file(tensors, Path(path) / HEAD_FILE)
        (Path(path) / HEAD_CONFIG).write_text(json.dumps(self.head.settings))


def load_parser(path, trust_remote_code: bool = False, relations: int | None = None) -> BiaffineParser:
    """The encoder at `path` with the biaffine head saved beside it, or a new head with `relations` outputs."""
    from safetensors.torch import load_file

    from .models import load_encoder

    encoder = load_encoder(path, trust_remote_code)
    saved = Path(path) / HEAD_CONFIG
    if not saved.is_file():
        return BiaffineParser(encoder, BiaffineHead(encoder.config.hidden_size, relations))
    head = BiaffineHead(**json.loads(saved.read_text()))
    head.load_state_dict(load_file(Path(path) / HEAD_FILE))
    return BiaffineParser(encoder, head)
