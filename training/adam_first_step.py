"""How far one restarted optimizer step moves the one-step student: a single DMD update of a student UNet with a fresh
AdamW at each learning rate, and its one-step judge accuracy on the same captions and noise before and after.

Adam's first update is lr x m / sqrt(v) = lr x sign(g) (bias-corrected moments of one gradient): every weight moves
by about lr, however small its gradient. Each GPU call of distill_dmd restarted the optimizer, and its probes fell
after the first student step (call 25's record); this measures that step alone, on CPU.

    python -m training.adam_first_step [--unet weights/bundled_turbo/unet] [--critic DIR] [--captions 256]
        [--lrs 2e-5 2e-6] [--out FILE.md]
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from training.analysis import ROOT, analysis_parser, run_analysis
from training.checkpoint import clipped_step
from training.data import sample_scenes, tokenize
from training.diffusion import add_noise
from training.distill_add import add_generate, one_step_x0
from training.distill_dmd import T_MAX, T_MIN, distribution_matching
from training.judge import caption_accuracy
from training.one_step import load_student_beside, scores_x0
from training.text_unet import EMPTY_PROMPT


def first_steps(run: Path, unet: Path, critic: Path | None, captions: int, lrs: list[float], guidance: float = 6.0,
                batch: int = 64) -> list[tuple[str, float, float]]:
    """(label, max |weight change|, one-step accuracy) for the start and after one update at each lr; RUN holds the
    teacher, VAE and judge (training.export --import)."""
    device = torch.device("cpu")
    parts = load_student_beside(run, unet, critic, device)
    teacher, vae, judge, scaling, alpha_bar, start = parts[:6]
    held = [s.caption for s in sample_scenes(4242, captions, "train")]

    def accuracy(model: UNet2DConditionModel) -> float:
        images = torch.cat([add_generate(model, teacher.text_encoder, vae, scaling, [c.text for c in held[i : i + 64]], 5 + i, device)
                            for i in range(0, len(held), 64)])
        return float(caption_accuracy(judge, images, held)[0]["caption"])

    scenes = sample_scenes(555, batch, "train")
    with torch.no_grad():
        text = teacher.text_encoder(tokenize([s.caption.text for s in scenes])).last_hidden_state
        empty = teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state.expand(batch, -1, -1)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((batch, 4, 16, 16), generator=gen)
    t = torch.randint(T_MIN, T_MAX, (batch,), generator=gen)
    eps = torch.randn((batch, 4, 16, 16), generator=gen)
    rows = [("start", 0.0, accuracy(start))]
    for lr in lrs:  # the same batch, noise and critic for every lr: only the step size differs
        student = copy.deepcopy(start).train().requires_grad_(True)
        opt = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
        x = one_step_x0(student, noise, text, alpha_bar)
        x_t = add_noise(x.detach(), eps, t, alpha_bar).float()
        real, faked = scores_x0(parts, x_t, t, text, empty, guidance)
        loss, _ = distribution_matching(x, real, faked)
        clipped_step(opt, loss, student.parameters())
        moved = max((p - q).abs().max().item() for p, q in zip(student.parameters(), start.parameters()))
        rows.append((f"one AdamW update at lr {lr:g}", moved, accuracy(student.eval())))
    return rows


def main() -> None:
    parser = analysis_parser(__doc__, "a fake score to compare against (default: the teacher)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[2e-5, 2e-6])
    args = parser.parse_args()

    def analyse(run: Path) -> str:
        rows = first_steps(run, args.unet, args.critic, args.captions, args.lrs)
        shown = args.unet.resolve().relative_to(ROOT) if args.unet.resolve().is_relative_to(ROOT) else args.unet
        head = (f"One DMD update (w = 6, 64 seen captions) of `{shown}` with a fresh AdamW; one-step judge accuracy on "
                f"{args.captions} other seen captions, the same noise for every row (CPU, fp32; `python -m training.adam_first_step`).")
        lines = [head, "", "| weights | max weight change | accuracy |", "|---|---|---|"]
        lines += [f"| {label} | {moved:.2e} | {acc:.3f} |" for label, moved, acc in rows]
        return "\n".join(lines) + "\n"

    run_analysis(analyse, args.out)


if __name__ == "__main__":
    main()
