"""A batch-1 call is queued on the card without the host waiting for it: no host-card synchronisation between
the text encoder, the denoiser's steps and the decoder, so the host launches the next kernels while the card
runs the last (pipelines.conditioning.to_device copies CPU tensors asynchronously; cfg picks its guided rows on
the host). Before, a guided DDIM step waited for the card six times and the one-step student's call five
(training/results/call32/record.md). Off CUDA, to_device is a plain `.to`; the CUDA check skips without a GPU or
without the shipped weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.conditioning import to_device

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a small red circle left of a large blue square"]


def test_to_device_off_cuda_is_a_plain_move() -> None:
    t = torch.arange(6, dtype=torch.float64).view(2, 3).expand(4, 2, 3)[1]
    moved = to_device(t, "cpu")
    assert torch.equal(moved, t) and moved.dtype == torch.float64
    assert to_device(torch.ones(2, dtype=torch.bool), torch.device("cpu")).dtype == torch.bool


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-card synchronisations exist on CUDA only")
@pytest.mark.parametrize(("model_id", "sampler", "steps", "guidance"),
                         [("bundled", "ddim", 4, 4.0), ("bundled-turbo", "turbo", 1, 1.0), ("bundled-lcm", "lcm", 2, 1.0)])
def test_a_call_with_the_serving_levers_never_waits_for_the_card(model_id: str, sampler: str, steps: int,
                                                                  guidance: float) -> None:
    from pipelines.accel import (
        enable_cuda_graphs,
        enable_text_encoder_graphs,
        enable_vae_decoder_accel,
    )
    from pipelines.loading import load_from_manifest
    from server.commands.eval import generate

    for folder in ("bundled", model_id.replace("-", "_")):
        if not (ROOT / "weights" / folder / "model_index.json").is_file():
            pytest.skip(f"weights/{folder} is not in this tree")
    model = load_from_manifest(model_id, ROOT / "weights_manifest.yaml", ROOT / "weights", device=torch.device("cuda"),
                               dtype=torch.float16)
    eager = generate(model, PROMPTS, sampler, steps, guidance, seed=3)
    enable_cuda_graphs(model)
    enable_text_encoder_graphs(model)
    enable_vae_decoder_accel(model, "graphs")
    for _ in range(2):  # the captures, then a replay
        generate(model, PROMPTS, sampler, steps, guidance, seed=3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        images = generate(model, PROMPTS, sampler, steps, guidance, seed=3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (images - eager).abs().max().item() <= 2 / 255  # graphs replay eager's kernels; the decoder's pad may round
