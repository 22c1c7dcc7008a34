"""The paper's configuration on the Qwen2.5-3B shapes has exactly 9,214,592 trainable parameters.

Only the config is written (no weights): the layout and shapes come from a meta-device skeleton.
"""

from transformers import Qwen2Config

from ouroboros.core.builder import plan
from ouroboros.core.config import OuroborosConfig


def test_paper_configuration_on_qwen25_3b_shapes(tmp_path):
    Qwen2Config(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True).save_pretrained(tmp_path)
    cfg = OuroborosConfig(backbone=str(tmp_path), prelude=8, recurrent=18, coda=8, controller="mlp",
                          modulation="diagonal", gate="sigmoid", normalizer="rmsnorm", rank=32, max_steps=64,
                          options={"controller": {"style_dim": 128}})
    _, split, layout, ctx, components = plan(cfg)
    assert ctx.target_shapes == {"q": (2048, 2048), "k": (256, 2048), "v": (256, 2048), "o": (2048, 2048),
                                 "gate": (11008, 2048), "up": (11008, 2048), "down": (2048, 11008)}
    counts = {kind: sum(p.numel() for p in m.parameters() if p.requires_grad) for kind, m in components.items()}
    assert counts == {"controller": 664_192, "modulation": 28_672, "gate": 8_390_656, "normalizer": 131_072}
    assert sum(counts.values()) == 9_214_592
    assert split.removed(36) == [*range(8, 18), *range(19, 28)]
