"""Judge accuracy of training.distill_refine's targets on the shipped one-step student (CPU, fp32).

The student's one-step samples, and the teacher's guided DDIM re-solve of them from s = 500 / 700 /
800 / 999 with the same noise, on N seen + N held-out captions (seed 4242). RUN is an import of the
shipped weights (`python -m training.export --import weights RUN`).

    python training/results/call16/target_accuracy.py RUN N     # prints a row per split (target_accuracy.md: N = 128)
"""

import sys
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from training.checkpoint import load_weights
from training.data import sample_scenes, tokenize
from training.diffusion import alphas_cumprod
from training.distill_add import decode, x0_from_eps
from training.distill_lcm import teacher_scaling
from training.distill_refine import refine
from training.judge import caption_accuracy
from training.models import Judge
from training.text_unet import EMPTY_PROMPT, load_frozen_teacher, load_frozen_vae

STARTS = ((500, 5), (700, 7), (800, 8), (999, 10))  # (s, teacher steps)


@torch.no_grad()
def main() -> None:
    out, count, device = Path(sys.argv[1]), int(sys.argv[2]), torch.device("cpu")
    teacher, vae, scaling = load_frozen_teacher(out, device), load_frozen_vae(out, device), teacher_scaling(out)
    judge = Judge()
    load_weights(judge, out / "judge" / "judge.safetensors")
    judge.eval()
    student = UNet2DConditionModel.from_pretrained("weights/bundled_turbo/unet").float().eval()
    alpha_bar = alphas_cumprod(device)
    for split in ("train", "heldout"):
        captions = [s.caption for s in sample_scenes(4242, count, split)]
        noise = torch.randn((count, 4, 16, 16), generator=torch.Generator().manual_seed(5))
        tokens = torch.cat((tokenize([c.text for c in captions]), tokenize([EMPTY_PROMPT]).expand(count, -1)))
        text_both = teacher.text_encoder(tokens).last_hidden_state
        t = torch.full((count,), 999, dtype=torch.long)
        x = x0_from_eps(noise, student(noise, t, encoder_hidden_states=text_both[:count]).sample, t, alpha_bar)
        row = {"student": caption_accuracy(judge, decode(vae, x, scaling).clamp(0, 1), captions)[0]["caption"]}
        for start, steps in STARTS:
            y = refine(teacher, x, noise, text_both, start, steps, alpha_bar)
            row[f"s={start}"] = caption_accuracy(judge, decode(vae, y, scaling).clamp(0, 1), captions)[0]["caption"]
        print(split, {k: round(v, 3) for k, v in row.items()}, flush=True)


if __name__ == "__main__":
    main()
