"""SCM's kept tokens against the official computation (layer 1's eager attention probabilities from the model's own
forward), on a hand-built layer where each query's own key decides the ranking and on small random models."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaModel

from minimonkey_eval.models.scm import scm_keep_indices


class NoRope(torch.nn.Module):
    """Rotary embedding that rotates nothing (cos 1, sin 0): scores are plain dot products of the normed inputs."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x, position_ids):
        shape = (1, position_ids.shape[-1], self.dim)
        return torch.ones(shape, dtype=x.dtype), torch.zeros(shape, dtype=x.dtype)


def official_keep(lm, embeds: torch.Tensor, start: int, high: int, ratio: float = 0.5,
                  fix_off_by_one: bool = False) -> torch.Tensor:
    """The official procedure on the full L x L layer-1 probabilities of the eager model's own forward."""
    probs = lm(inputs_embeds=embeds[None], output_attentions=True).attentions[1][0]     # [H, L, L]
    scores = probs[:, start + high:, start:start + high].mean(1).mean(0)
    kept = scores.topk(int(high * ratio)).indices.sort().values + start
    tail = start + high + (0 if fix_off_by_one else 1)
    return torch.cat([torch.arange(start), kept, torch.arange(tail, embeds.shape[0])])


def hand_built() -> LlamaModel:
    """Two layers, one head of 4 dims; layer 0 adds nothing (zero output projections), layer 1 scores 3 <x, y> / 2."""
    config = LlamaConfig(vocab_size=8, hidden_size=4, intermediate_size=4, num_hidden_layers=2,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=4, attn_implementation="eager")
    torch.manual_seed(0)
    lm = LlamaModel(config).eval()
    with torch.no_grad():
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        lm.layers[1].self_attn.q_proj.weight.copy_(3 * torch.eye(4))
        lm.layers[1].self_attn.k_proj.weight.copy_(torch.eye(4))
    lm.rotary_emb = NoRope(4)
    return lm


@torch.no_grad()
def test_each_query_attends_to_its_own_key():
    """Prefix e3, block [e0, e1], queries A (close to itself, leaning to e0) and B (leaning to e1). With the query's
    own key in the softmax (causal mask ``key > query``), A's large self-score shrinks its votes and B decides: e1 is
    kept. Masking the own key too (``key >= query``) would let A decide and keep e0."""
    lm = hand_built()
    eye = torch.eye(4)
    a = torch.tensor([1.0, 0.0, 3.0, 0.0])
    b = torch.tensor([0.9, 1.0, 0.2, 0.0])
    embeds = torch.stack([eye[3], eye[0], eye[1], a, b])
    assert scm_keep_indices(lm, embeds, 1, 2).tolist() == [0, 2, 4]      # e1 kept; the token after the block dropped
    assert scm_keep_indices(lm, embeds, 1, 2, fix_off_by_one=True).tolist() == [0, 2, 3, 4]
    assert torch.equal(scm_keep_indices(lm, embeds, 1, 2), official_keep(lm, embeds, 1, 2))


def random_llama(attn: str, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> LlamaModel:
    config = LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=8,
                         attn_implementation=attn)
    torch.manual_seed(seed)
    lm = LlamaModel(config).eval()
    with torch.no_grad():
        for p in lm.parameters():           # larger weights than the init: peaked attention, a ranking with margins
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    return lm


@torch.no_grad()
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_models_match_the_official_ranking(seed):
    lm = random_llama("eager", seed=seed)
    embeds = torch.randn(48, 32, generator=torch.Generator().manual_seed(seed))
    start, high = 5, 16
    official = official_keep(lm, embeds, start, high)
    for chunk in (1, 7, 256):               # query chunks that split the rows anyhow: the same kept tokens
        assert torch.equal(scm_keep_indices(lm, embeds, start, high, query_chunk=chunk), official)
    assert torch.equal(scm_keep_indices(lm, embeds, start, high, ratio=0.25, fix_off_by_one=True),
                       official_keep(lm, embeds, start, high, ratio=0.25, fix_off_by_one=True))
    kept = scm_keep_indices(lm, embeds, start, high)
    assert len(kept) == start + high // 2 + (48 - start - high - 1)


@torch.no_grad()
def test_sdpa_model_keeps_what_the_eager_one_keeps():
    """Layer 0 runs through the model's own kernel (SDPA: causal by ``is_causal``); same tokens as eager."""
    embeds = torch.randn(40, 32, generator=torch.Generator().manual_seed(5))
    eager = scm_keep_indices(random_llama("eager", seed=3), embeds, 4, 16)
    assert torch.equal(scm_keep_indices(random_llama("sdpa", seed=3), embeds, 4, 16), eager)
    assert torch.equal(eager, official_keep(random_llama("eager", seed=3), embeds, 4, 16))


@torch.no_grad()
def test_block_at_the_end_has_no_queries():
    """No query after the block: the official mean over an empty dimension is NaN; the kept count stays int(high/2)."""
    lm = random_llama("eager")
    embeds = torch.randn(12, 32, generator=torch.Generator().manual_seed(1))
    kept = scm_keep_indices(lm, embeds, 4, 8, fix_off_by_one=True)
    assert kept[:4].tolist() == [0, 1, 2, 3] and len(kept) == 8
    assert all(4 <= int(i) < 12 for i in kept[4:])


@pytest.mark.parametrize("start, high", [(4, 0), (4, 9), (0, 13)])
def test_block_that_does_not_fit_is_refused(start, high):
    with pytest.raises(ValueError, match="does not fit a prompt of 12 tokens"):
        scm_keep_indices(random_llama("eager"), torch.randn(12, 32), start, high)


@torch.no_grad()
def test_block_filling_the_prompt_to_its_end_is_accepted():
    kept = scm_keep_indices(random_llama("eager"), torch.randn(12, 32), 4, 8)
    assert len(kept) == 4 + 4


@torch.no_grad()
def test_fused_qkv_of_phi3_matches_the_official_ranking():
    """Phi-3's one ``qkv_proj``: rows are all query heads, then the key heads (GQA), then the value heads."""
    from transformers import Phi3Config
    from transformers.models.phi3.modeling_phi3 import Phi3Model

    config = Phi3Config(vocab_size=16, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager",
                        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(4)
    lm = Phi3Model(config).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    embeds = torch.randn(40, 32, generator=torch.Generator().manual_seed(4))
    assert hasattr(lm.layers[1].self_attn, "qkv_proj")
    for start, high in ((3, 16), (6, 12)):
        assert torch.equal(scm_keep_indices(lm, embeds, start, high), official_keep(lm, embeds, start, high))
