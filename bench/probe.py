"""Where does Darkroom's image part from the diffusers pipeline's? Stage by stage, one seed, on GPU.

Compares text embeddings, final latents and decoded images of `pipelines.text_to_image` with the
diffusers pipeline over the same random-weight modules (fp16), and reports non-finite values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.arch import Architecture
from bench.baseline import PROMPT, make_pipeline


def _stats(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    ours, theirs = ours.float().cpu(), theirs.float().cpu()
    diff = (ours - theirs).abs()
    return {
        "stage": name, "max_abs_diff": float(diff.nan_to_num(1e9).max()), "mean_abs_diff": float(diff.nan_to_num(0).mean()),
        "ours_nonfinite": int((~torch.isfinite(ours)).sum()), "theirs_nonfinite": int((~torch.isfinite(theirs)).sum()),
        "ours_mean": float(ours.nan_to_num(0).mean()), "theirs_mean": float(theirs.nan_to_num(0).mean()),
    }


def probe(arch: Architecture, model: object, case: object, tokenizer_dir: Path) -> list[dict]:
    """Stage-by-stage differences for one seed-0 image of `case` (a bench.gpu.Case)."""
    from pipelines.text_to_image import text_to_image

    pipe = make_pipeline(arch, tokenizer_dir, euler_trailing=case.baseline_scheduler == "euler_trailing")
    out: list[dict] = []
    with torch.no_grad():
        if arch.text_encoder_2 is None:
            theirs_c, theirs_u = pipe.encode_prompt(PROMPT, model.device, 1, True, negative_prompt="")
            cond, _ = model.text_encoder.encode([PROMPT, ""])
            out.append(_stats("text_cond", cond.text_embeddings[:1], theirs_c))
            out.append(_stats("text_uncond", cond.text_embeddings[1:], theirs_u))
        kwargs = {"prompt": PROMPT, "num_inference_steps": case.steps, "guidance_scale": case.guidance,
                  "height": case.side, "width": case.side}
        latents = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0), output_type="latent").images
        images_np = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0), output_type="np").images
        theirs_img = torch.from_numpy(np.asarray(images_np)).permute(0, 3, 1, 2)
        ours_img, _ = text_to_image(model, PROMPT, sampler=case.sampler, steps=case.steps,
                                    guidance=case.guidance if case.guidance > 0 else 1.0, seed=0,
                                    width=case.side, height=case.side)
        # our final latent, re-decoded the diffusers way, isolates sampling from decoding
        decoded_theirs_way = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        out.append(_stats("their_latents_decoded_fp16_vs_their_np", (decoded_theirs_way / 2 + 0.5).clamp(0, 1), theirs_img))
        out.append(_stats("image", ours_img, theirs_img))
        out.append({"stage": "their_latents", "nonfinite": int((~torch.isfinite(latents)).sum()),
                    "std": float(latents.float().nan_to_num(0).std())})
    for row in out:
        print("  probe", row, flush=True)
    return out
