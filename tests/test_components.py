"""The conformance matrix: every registered component (third-party ones too, when installed) through the same
checks (ouroboros.testing)."""

import pytest

from ouroboros.core.kinds import KINDS
from ouroboros.testing import CHECKS, check_roundtrip, compositions

MATRIX = [(kind, comp) for kind in KINDS for comp in compositions(kind)]
IDS = [f"{kind}={comp[kind]}" for kind, comp in MATRIX]


@pytest.mark.parametrize("kind,composition", MATRIX, ids=IDS)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check, kind, composition, llama_dir, tmp_path):
    if check is check_roundtrip:
        check(llama_dir, composition, tmp_path / "ckpt")
    else:
        check(llama_dir, composition)


def test_matrix_covers_every_builtin():
    names = {(kind, comp[kind]) for kind, comp in MATRIX}
    assert {("controller", "mlp"), ("controller", "none"), ("modulation", "diagonal"), ("modulation", "static"),
            ("modulation", "none"), ("gate", "sigmoid"), ("gate", "none"), ("normalizer", "rmsnorm"),
            ("normalizer", "layernorm"), ("normalizer", "none")} <= names


@pytest.mark.parametrize("pooling", ["causal_mean", "token"])
def test_causal_poolings_are_causal(pooling, llama_dir):
    from ouroboros.testing import check_causal

    check_causal(llama_dir, {"controller": "mlp", "modulation": "diagonal", "gate": "sigmoid",
                             "normalizer": "rmsnorm"} | {})  # default pooling via the matrix; token below
    if pooling == "token":
        import torch

        import ouroboros
        from ouroboros.testing import randomise_trainable

        model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4,
                                options={"controller": {"pooling": "token"}})
        randomise_trainable(model)
        ids = torch.randint(3, 97, (1, 10), generator=torch.Generator().manual_seed(5))
        changed = ids.clone()
        changed[0, 6] = 4 if ids[0, 6] != 4 else 5
        delta = (model(changed, depth=3).logits - model(ids, depth=3).logits).abs()
        assert delta[:, :6].max() == 0 and delta[:, 6:].max() > 0
