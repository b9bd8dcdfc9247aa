"""pipelines.accel.CudaGraphTextModel: the CLIP text encoders replayed as CUDA graphs, exact against
eager on the same shapes; a no-op off CUDA (the CUDA checks skip cleanly without a GPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from pipelines.accel import CudaGraphTextModel, enable_text_encoder_graphs
from pipelines.text import ClipTextEncoder, ClipTokenizer

PROMPTS = ["a small red circle left of a big blue square", "", "two green triangles"]


def tiny_encoder(device: str, dtype: torch.dtype, hidden_layer: int = -1) -> ClipTextEncoder:
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, eos_token_id=49407)
    model = CLIPTextModel(config).to(device, dtype)
    return ClipTextEncoder(model, ClipTokenizer(), hidden_layer=hidden_layer)


class Holder:
    def __init__(self, encoder: ClipTextEncoder) -> None:
        self.text_encoder = encoder


def test_off_cuda_nothing_is_wrapped_and_the_wrapper_passes_through() -> None:
    encoder = tiny_encoder("cpu", torch.float32)
    before = encoder.encode(PROMPTS)[0].text_embeddings
    assert enable_text_encoder_graphs(Holder(encoder)) == 0
    assert not isinstance(encoder.model, CudaGraphTextModel)
    encoder.model = CudaGraphTextModel(encoder.model)  # CPU tensors: the eager model, same outputs
    assert torch.equal(encoder.encode(PROMPTS)[0].text_embeddings, before)
    assert encoder.model.captured_signatures == []
    assert enable_text_encoder_graphs(Holder(encoder)) == 0  # already wrapped
    assert enable_text_encoder_graphs(object()) == 0  # a model without a text encoder (DiT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("hidden_layer", [-1, -2])
def test_graphs_replay_exactly_what_eager_computes(hidden_layer: int) -> None:
    encoder = tiny_encoder("cuda", torch.float16, hidden_layer)
    eager = {n: encoder.encode(PROMPTS[:n])[0].text_embeddings for n in (1, 3)}
    assert enable_text_encoder_graphs(Holder(encoder)) == 1
    for _ in range(2):  # the capture, then a replay
        for n, want in eager.items():
            assert torch.equal(encoder.encode(PROMPTS[:n])[0].text_embeddings, want)
    assert len(encoder.model.captured_signatures) == 2  # one per batch shape
    other = encoder.encode(["a big yellow square"])[0].text_embeddings  # new ids in a captured shape
    encoder_eager = tiny_encoder("cuda", torch.float16, hidden_layer)
    assert torch.equal(other, encoder_eager.encode(["a big yellow square"])[0].text_embeddings)
