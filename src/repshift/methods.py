"""Fine-tuning methods: which of the encoder's parameters train (every one; BitFit: its biases) or what is added to it
to train (LoRA and IA3, through peft; a soft prompt), and the trained model saved as a plain encoder that extraction,
layer drop and the measures read like any other (a soft prompt beside it, attached again on loading). The task head
always trains."""

from .errors import UserError


def _check_targets(model, method: dict, key: str) -> None:
    """Every name in method[key] ends the name of one of the encoder's linear layers, as peft matches them ("value",
    "output.dense"); else one line naming the config key and the layers there are."""
    import torch

    linear = [name for name, module in model.base_model.named_modules() if isinstance(module, torch.nn.Linear)]
    missing = [target for target in method[key] if not any(f".{name}".endswith(f".{target}") for name in linear)]
    if missing:
        known = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise UserError(f"config key methods.{method['name']}.{key}: {', '.join(missing)} not among the linear layers "
                        f"of {type(model.base_model).__name__} ({', '.join(known)})")


def _bitfit(model, method: dict) -> None:
    for name, parameter in model.base_model.named_parameters():
        parameter.requires_grad_(name.endswith("bias"))


def _lora(model, method: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    _check_targets(model, method, "target_modules")
    config = LoraConfig(r=method["rank"], lora_alpha=method["alpha"], lora_dropout=method["dropout"],
                        target_modules=method["target_modules"])
    inject_adapter_in_model(config, model.base_model)


def _ia3(model, method: dict) -> None:
    from peft import IA3Config, inject_adapter_in_model

    for key in ("target_modules", "feedforward_modules"):
        _check_targets(model, method, key)
    if not set(method["feedforward_modules"]) <= set(method["target_modules"]):
        raise UserError(f"config key methods.{method['name']}.feedforward_modules: each must also be in "
                        "target_modules (they are the targets whose input, not output, is scaled)")
    inject_adapter_in_model(IA3Config(target_modules=method["target_modules"],
                                      feedforward_modules=method["feedforward_modules"]), model.base_model)


def _prompt(model, method: dict) -> None:
    from .soft_prompt import attach

    model.base_model.requires_grad_(False)
    attach(model.base_model, method["virtual_tokens"], method["name"])


PREPARE = {"bitfit": _bitfit, "lora": _lora, "ia3": _ia3, "prompt": _prompt}


def prepare(model, method: dict | None):
    """Make `model` train with `method` (a config `methods` entry with its `name`; None: full fine-tuning) in place:
    LoRA adds rank-r updates BA (scaled by alpha/r) beside the targeted linear layers, IA3 a learned vector that scales
    each targeted layer's output (a feed-forward one's input), and a prompt n learned input vectors (soft_prompt); all
    three freeze the encoder's own weights. BitFit trains only the encoder's biases."""
    if method is not None:
        PREPARE[method["kind"]](model, method)
    return model


def save(model, folder) -> None:
    """`model` saved to `folder` as the architecture it came from: every adapter merged into the weight it sits beside
    (LoRA: W + (alpha/r) BA; IA3: W scaled by its vector) and replaced by the plain layer it wraps; a soft prompt,
    which no weight can hold, beside them (models.PROMPT_FILE)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from .soft_prompt import detach

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BaseTunerLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())
    prompt = detach(model.base_model)
    model.save_pretrained(folder, safe_serialization=True)
    if prompt is not None:
        prompt.save(folder)
