"""repshift: how fine-tuning changes a transformer's representation space, layer by layer."""

__version__ = "0.1.0"
