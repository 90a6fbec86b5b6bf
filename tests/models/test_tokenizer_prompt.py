"""The InternLM2 tokenizer built from tokenizer.model, and the internlm2-chat prompt with image tokens."""
from __future__ import annotations

import sentencepiece as spm

from minimonkey_eval.models.chat_template import INTERNVL2_SYSTEM_MESSAGE, build_query
from minimonkey_eval.models.tokenizer import InternLM2Tokenizer


def test_special_tokens_and_ids(tiny_checkpoint):
    tok = InternLM2Tokenizer.from_pretrained(tiny_checkpoint)
    sp = spm.SentencePieceProcessor(model_file=str(tiny_checkpoint / "tokenizer.model"))
    n = sp.GetPieceSize()
    # The six remapped InternLM2 pieces are the last sentencepiece ids; InternVL's nine tokens follow the vocabulary.
    assert tok.convert_tokens_to_ids("<|im_end|>") == n - 2 and sp.IdToPiece(n - 2) == "[UNUSED_TOKEN_145]"
    assert tok.convert_tokens_to_ids("<|im_start|>") == n - 1
    assert [tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>", "<IMG_CONTEXT>")] == [n, n + 1, n + 2]
    assert len(tok) == n + 9 and tok.bos_token_id == 1 and tok.eos_token_id == 2


def test_encode_splits_added_tokens_then_sentencepiece(tiny_checkpoint):
    tok = InternLM2Tokenizer.from_pretrained(tiny_checkpoint)
    sp = tok.sp_model
    text = "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\nWhat is it?<|im_end|><|im_start|>assistant\n"
    ids = tok.encode(text)
    c = tok.convert_tokens_to_ids
    expected = ([1, c("<|im_start|>")] + sp.EncodeAsIds("user\n") + [c("<img>"), c("<IMG_CONTEXT>"), c("<IMG_CONTEXT>"),
                c("</img>")] + sp.EncodeAsIds("\nWhat is it?") + [c("<|im_end|>"), c("<|im_start|>")]
                + sp.EncodeAsIds("assistant\n"))
    assert ids == expected
    assert tok.encode("abc", add_special_tokens=False) == sp.EncodeAsIds("abc")


def test_decode_skips_special_and_has_no_leading_space(tiny_checkpoint):
    tok = InternLM2Tokenizer.from_pretrained(tiny_checkpoint)
    c = tok.convert_tokens_to_ids
    for text in ("yes", "The answer is B", "42", " leading"):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids + [c("<|im_end|>")]) == text
    assert tok.decode([1, c("<img>"), *tok.encode("ok", False), c("<|im_end|>"), 2]) == "ok"
    # transformers 4.37 clean_up_tokenization, applied by the official convert_tokens_to_string
    assert tok.decode(tok.encode("3 . 5 , it 's", False)) == "3. 5, it's"


def test_chat_prompt_single_and_multi_image():
    q = build_query("What is shown?", [2])
    ctx = "<IMG_CONTEXT>" * 512
    assert q == (f"<|im_start|>system\n{INTERNVL2_SYSTEM_MESSAGE}<|im_end|><|im_start|>user\n<img>{ctx}</img>\n"
                 "What is shown?<|im_end|><|im_start|>assistant\n")
    multi = build_query("<image-1>: <image> <image-2>: <image>\nCompare.", [1, 3])
    assert ("<image-1>: <img>" + "<IMG_CONTEXT>" * 256 + "</img> <image-2>: <img>" + "<IMG_CONTEXT>" * 768
            + "</img>\nCompare." in multi)
    assert build_query("Just text", []) .endswith("user\nJust text<|im_end|><|im_start|>assistant\n")
