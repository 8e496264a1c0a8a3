"""Prompt tuning (Lester et al. 2021), with peft's prompt embedding: n learned vectors inserted into every input
after its first piece ([CLS], <s>). Every piece attends to them; what reads the encoder's output (pooler, task head,
extraction, layer drop) sees only the real pieces, at the positions they have in the plain encoder's output. No weight
can hold the prompt, so it is saved beside the encoder (models.PROMPT_FILE) and attached again when the encoder
loads."""

import inspect
from pathlib import Path

import torch

from .errors import UserError
from .models import PROMPT_FILE

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class SoftPrompt(torch.nn.Module):
    """The prompt of method `name`, hooked into `encoder`'s forward pass; new ones start from the embeddings of
    randomly drawn vocabulary pieces (peft's SAMPLE_VOCAB), saved ones from `weights`."""

    def __init__(self, encoder, virtual_tokens: int, name: str, weights: torch.Tensor | None = None):
        from peft import PromptEmbedding, PromptTuningConfig

        super().__init__()
        words = encoder.get_input_embeddings()
        config = PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=virtual_tokens,
                                    token_dim=words.embedding_dim, num_transformer_submodules=1,
                                    prompt_tuning_init="SAMPLE_VOCAB", inference_mode=weights is not None)
        self.prompt = PromptEmbedding(config, words).to(words.weight.device)
        if weights is not None:
            self.prompt.embedding.weight.data.copy_(weights)
        self.name, self.virtual_tokens = name, virtual_tokens
        padding = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
        self.positions = encoder.config.max_position_embeddings - (0 if padding is None else padding + 1)
        parameters = inspect.signature(encoder.forward).parameters.values()
        self.arguments = [p.name for p in parameters if p.kind in POSITIONAL]
        self.encoder_name = type(encoder).__name__

    def _spliced(self, tensor: torch.Tensor, inserted: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor[:, :1], inserted, tensor[:, 1:]], 1)

    def insert(self, encoder, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Forward pre-hook: the input pieces' embeddings with the prompt after the first, and the attention mask
        and token types of the first piece repeated for it."""
        inputs = dict(zip(self.arguments, args)) | kwargs
        ids, pieces = inputs.pop("input_ids", None), inputs.pop("inputs_embeds", None)
        if pieces is None:
            pieces = encoder.get_input_embeddings()(ids)
        batch, length = pieces.shape[:2]
        if length + self.virtual_tokens > self.positions:
            raise UserError(f"config key methods.{self.name}.virtual_tokens: {self.virtual_tokens} and {length} pieces "
                            f"exceed the {self.positions} positions of {self.encoder_name}; lower it or the "
                            "max_length of finetune and extract")
        if inputs.get("position_ids") is not None:
            raise ValueError("a prompt-tuned encoder numbers its positions itself; pass no position_ids")
        weight = self.prompt.embedding.weight
        inputs["inputs_embeds"] = self._spliced(pieces, weight.to(pieces.dtype).expand(batch, -1, -1))
        for key in ("attention_mask", "token_type_ids"):
            if inputs.get(key) is not None:
                inputs[key] = self._spliced(inputs[key], inputs[key][:, :1].expand(-1, self.virtual_tokens))
        return (), inputs

    def remove(self, encoder, args: tuple, output):
        """Forward hook: the encoder's output states without the prompt's positions."""
        def real(states):
            return torch.cat([states[:, :1], states[:, 1 + self.virtual_tokens :]], 1)

        output["last_hidden_state"] = real(output["last_hidden_state"])
        if output.get("hidden_states") is not None:
            output["hidden_states"] = tuple(real(states) for states in output["hidden_states"])
        return output

    def save(self, folder) -> None:
        from safetensors.torch import save_file

        save_file({"prompt": self.prompt.embedding.weight.detach().cpu().contiguous()}, Path(folder) / PROMPT_FILE,
                  metadata={"method": self.name})


def attach(encoder, virtual_tokens: int, name: str, weights: torch.Tensor | None = None) -> SoftPrompt:
    """Hook a prompt into `encoder` (as its submodule `soft_prompt`, so it trains, moves and checkpoints with it)."""
    prompt = SoftPrompt(encoder, virtual_tokens, name, weights)
    encoder.soft_prompt = prompt
    prompt.hooks = [encoder.register_forward_pre_hook(prompt.insert, with_kwargs=True),
                    encoder.register_forward_hook(prompt.remove)]
    return prompt


def detach(encoder) -> SoftPrompt | None:
    """Unhook and return `encoder`'s prompt, if it has one."""
    prompt = getattr(encoder, "soft_prompt", None)
    if prompt is not None:
        for hook in prompt.hooks:
            hook.remove()
        del encoder.soft_prompt
    return prompt


def attach_saved(encoder, folder) -> None:
    """Attach the prompt saved in `folder`, if there is one."""
    from safetensors import safe_open

    path = Path(folder) / PROMPT_FILE
    if path.is_file():
        with safe_open(str(path), "pt") as saved:
            weights, name = saved.get_tensor("prompt"), saved.metadata()["method"]
        attach(encoder, weights.shape[0], name, weights)
