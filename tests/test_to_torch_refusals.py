"""to_torch refuses what torch.nn.LSTM cannot compute (it would run the plain cell)."""

import pytest

import cylstm

VARIANTS = [dict(reverse=True), dict(go_backwards=True), dict(peepholes=True), dict(clip=1.0),
            dict(input_forget=True), dict(activations=["HardSigmoid", "Tanh", "Tanh"])]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: next(iter(variant)))
def test_variants_torch_lacks_are_refused_by_name(variant):
    pytest.importorskip("torch")
    with pytest.raises(NotImplementedError, match=f"torch.nn.LSTM has no {next(iter(variant))}"):
        cylstm.LSTM(3, 4, **variant).to_torch()
