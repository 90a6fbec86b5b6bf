"""Chat prompts: the InternVL2 family's templates with their system message and the image-token expansion.

Reproduces the official ``chat()`` of InternVL / Mini-Monkey (``modeling_internvl_chat.py``) with the templates of
InternVL's ``conversation.py`` (OpenGVLab/InternVL @2410d1d, L346-392):

* ``internlm2-chat`` (Mini-Monkey, InternVL2-2B) and ``Hermes-2`` (Mini-InternVL2-1B): ChatML,
  ``<|im_start|>system\\n{SYS}<|im_end|><|im_start|>user\\n{question}<|im_end|><|im_start|>assistant\\n``;
  the two are identical at inference (they differ only in whether training prepends ``<s>``);
* ``phi3-chat`` (Mini-InternVL2-4B): ``<|system|>\\n{SYS}<|end|><|user|>\\n{question}<|end|><|assistant|>\\n``;
* all three: MPT separator style, separator without a trailing newline, the same Chinese system message;
* if the question has no ``<image>`` placeholder and there are images, ``'<image>\\n'`` is prepended;
* each ``<image>`` (in order) becomes ``<img>`` + ``<IMG_CONTEXT>`` x (256 * tiles of that image) + ``</img>``;
* ``chat()`` passes ``eos_token_id = convert_tokens_to_ids(template.sep.strip())`` (``<|im_end|>`` / ``<|end|>``)
  and nothing else, and answers ``batch_decode(out, skip_special_tokens=True)[0].split(sep.strip())[0].strip()``.
  ``conversation.py``'s own ``stop_str`` / ``stop_token_ids`` (Hermes-2: ``<|endoftext|>``; at the InternVL 2.0
  release also ids [2, 6, 7, 8] for Hermes-2 and [2, 32000, 32007] for phi3-chat) are not used by ``chat()``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from minimonkey_eval.models.tokenizer import IMG_CONTEXT, IMG_END, IMG_START

INTERNVL2_SYSTEM_MESSAGE = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
                            "英文名叫InternVL, 是一个有用无害的人工智能助手。")
IMAGE_PLACEHOLDER = "<image>"
TOKENS_PER_TILE = 256


@dataclass(frozen=True)
class ChatTemplate:
    """An MPT-style conversation template (InternVL ``conversation.py``); ``chat()`` stops at ``sep.strip()``."""

    name: str
    system_template: str
    system_message: str
    roles: tuple[str, str]
    sep: str

    def render(self, question: str) -> str:
        """One user turn after the system message, ending where the assistant's answer starts."""
        text = self.system_template.format(system_message=self.system_message) + self.sep
        return text + self.roles[0] + question + self.sep + self.roles[1]


INTERNLM2_CHAT = ChatTemplate(
    name="internlm2-chat",
    system_template="<|im_start|>system\n{system_message}",
    system_message=INTERNVL2_SYSTEM_MESSAGE,
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    sep="<|im_end|>",
)

# Hermes-2 (Mini-InternVL2-1B, Qwen2) is ChatML like internlm2-chat: the same strings, its own name in config.json.
HERMES_2 = dataclasses.replace(INTERNLM2_CHAT, name="Hermes-2")

PHI3_CHAT = ChatTemplate(
    name="phi3-chat",
    system_template="<|system|>\n{system_message}",
    system_message=INTERNVL2_SYSTEM_MESSAGE,
    roles=("<|user|>\n", "<|assistant|>\n"),
    sep="<|end|>",
)

TEMPLATES = {t.name: t for t in (INTERNLM2_CHAT, HERMES_2, PHI3_CHAT)}
# llm_config.architectures[0] -> the templates whose turn tokens its tokenizer has (ChatML for InternLM2 and Qwen2,
# Phi-3's own for Phi-3): another template would prompt with tokens the LLM never learnt and stop at a wrong end token.
TEMPLATES_FOR_ARCH = {"InternLM2ForCausalLM": ("internlm2-chat", "Hermes-2"),
                      "Qwen2ForCausalLM": ("Hermes-2", "internlm2-chat"),
                      "Phi3ForCausalLM": ("phi3-chat",)}


def get_template(name: str, system_message: str | None = None) -> ChatTemplate:
    """The named template; ``system_message`` (from config.json, when present) overrides the default."""
    if name not in TEMPLATES:
        raise ValueError(f"unsupported chat template {name!r}; supported: {', '.join(sorted(TEMPLATES))}")
    template = TEMPLATES[name]
    if system_message is not None:
        template = ChatTemplate(**{**template.__dict__, "system_message": system_message})
    return template


def image_tokens(num_tiles: int, tokens_per_tile: int = TOKENS_PER_TILE) -> str:
    return IMG_START + IMG_CONTEXT * (tokens_per_tile * num_tiles) + IMG_END


def build_query(question: str, tiles_per_image: list[int], template: ChatTemplate = INTERNLM2_CHAT,
                tokens_per_tile: int = TOKENS_PER_TILE) -> str:
    """The full prompt string the official ``chat()`` tokenizes (before BOS)."""
    if tiles_per_image and IMAGE_PLACEHOLDER not in question:
        question = IMAGE_PLACEHOLDER + "\n" + question
    placeholders = question.count(IMAGE_PLACEHOLDER)
    if placeholders < len(tiles_per_image):
        raise ValueError(f"question has {placeholders} '<image>' placeholders for {len(tiles_per_image)} images")
    query = template.render(question)
    for n in tiles_per_image:
        query = query.replace(IMAGE_PLACEHOLDER, image_tokens(n, tokens_per_tile), 1)
    return query
