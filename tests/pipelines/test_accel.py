"""CUDA graph replay gives the eager UNet's output; off CUDA it is the eager module unchanged."""

import pytest
import torch

from pipelines.accel import CudaGraphUNet
from pipelines.tiny import tiny_sd1


def _inputs(unet: torch.nn.Module, rows: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 4, 8, 8, generator=g).to(device)
    t = torch.linspace(10.0, 900.0, rows).to(device)
    context = torch.randn(rows, 77, unet.config.cross_attention_dim, generator=g).to(device)
    return x, t, context


def test_cpu_calls_go_to_the_eager_module_unchanged() -> None:
    unet = tiny_sd1().denoiser.unet
    graphed = CudaGraphUNet(unet)
    x, t, context = _inputs(unet, 3, "cpu")
    out = graphed(x, t, encoder_hidden_states=context, return_dict=False)[0]
    ref = unet(x, t, encoder_hidden_states=context, return_dict=False)[0]
    assert torch.equal(out, ref)
    assert graphed.captured_signatures == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replay_matches_eager_for_each_bucket_and_new_inputs() -> None:
    unet = tiny_sd1().denoiser.unet.to("cuda")
    graphed = CudaGraphUNet(unet)
    for rows in (1, 2, 4, 2):
        x, t, context = _inputs(unet, rows, "cuda")
        out = graphed(x, t, encoder_hidden_states=context, return_dict=False)[0]
        ref = unet(x, t, encoder_hidden_states=context, return_dict=False)[0]
        assert (out - ref).abs().max().item() < 1e-5
    assert len(graphed.captured_signatures) == 3
