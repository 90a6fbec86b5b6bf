"""The attention kernel of a transformers config: the one place that reads or writes its private field.

transformers (checked against 5.24.0) keeps the kernel in ``PretrainedConfig._attn_implementation`` and offers no
public getter, and no public setter for a config whose model is not built yet; a built model has the public
``PreTrainedModel.set_attn_implementation`` (``eval/backends/reference.py`` switches kernels with it). Every other
module asks these two functions, so a transformers release that renames the field changes this file only.
"""
from __future__ import annotations

SDPA, EAGER = "sdpa", "eager"


def attention_of(config) -> str | None:
    """The kernel a config (or sub-config) runs: 'sdpa', 'eager', 'flash_attention_2', or None if unset."""
    return getattr(config, "_attn_implementation", None)


def configure_attention(config, text: str) -> None:
    """Before the model is built: ``text`` for the composite config and its LLM; the vision tower runs eager when
    ``text`` is eager (the reference mode), else SDPA (InternViT has no flash-attention path here)."""
    config._attn_implementation = text
    config.text_config._attn_implementation = text
    config.vision_config._attn_implementation = EAGER if text == EAGER else SDPA
