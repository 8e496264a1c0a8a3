"""Fine-tuning methods: which of the encoder's parameters train (every one; BitFit: its biases) or what is added to it
to train (LoRA, through peft), and the trained model folded back into a plain encoder that extraction, layer drop and
the measures read like any other. The task head always trains."""

from .errors import UserError


def _linear_names(encoder) -> list[str]:
    """The last name of every linear layer of the encoder (what LoRA's target_modules match)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in encoder.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def _bitfit(model, method: dict) -> None:
    encoder = model.base_model
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(name.endswith("bias"))


def _lora(model, method: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    known = _linear_names(model.base_model)
    missing = [target for target in method["target_modules"] if target not in known]
    if missing:
        raise UserError(f"config key methods.{method['name']}.target_modules: {', '.join(missing)} not among the "
                        f"linear layers of {type(model.base_model).__name__} ({', '.join(known)})")
    config = LoraConfig(r=method["rank"], lora_alpha=method["alpha"], lora_dropout=method["dropout"],
                        target_modules=method["target_modules"])
    inject_adapter_in_model(config, model.base_model)


PREPARE = {"bitfit": _bitfit, "lora": _lora}


def prepare(model, method: dict | None):
    """Make `model` train with `method` (a config `methods` entry with its `name`; None: full fine-tuning) in place:
    LoRA adds rank-r updates BA (scaled by alpha/r) beside the targeted linear layers and freezes the encoder's own
    weights; BitFit trains only the encoder's biases."""
    if method is not None:
        PREPARE[method["kind"]](model, method)
    return model


def fold(model):
    """`model` with every LoRA update merged into the weight it sits beside (W + (alpha/r) BA) and the adapter layers
    replaced by the plain layers they wrap, so it saves and loads as the architecture it came from."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BaseTunerLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())
    return model


def trainable_parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
