"""Where DMD's two scores differ in what the judge sees: the one-step student's samples noised to timestep t, denoised
in one evaluation by the teacher (guided, the "real" score) and by a critic's fake score, each x0 decoded and judged.

The student's DMD gradient at t is (x0_fake - x0_real) / n: it pulls the sample toward the teacher's x0 and away from
the fake score's. Where the teacher's x0 of the noised sample is judged right more often than the fake score's, that
pull carries whole-caption accuracy; where both are judged alike, the gradient at that t moves the sample without it.
A per-t table of both accuracies (all captions and three-object ones) shows which timesteps carry what the student
lacks, the question of distill_dmd --t-range (call 27's recipe).

    python -m training.score_targets [--unet weights/bundled_turbo/unet] [--critic DIR] [--captions 256]
        [--timesteps 50 150 300 500 700 900] [--guidance 6] [--out FILE.md]
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.analysis import analysis_parser, run_analysis
from training.data import sample_scenes, tokenize
from training.diffusion import add_noise
from training.distill_add import decode, one_step_x0
from training.judge import caption_accuracy
from training.one_step import load_student_beside, scores_x0
from training.text_unet import EMPTY_PROMPT


@torch.no_grad()
def score_targets(run: Path, unet: Path, critic: Path | None, captions: int, timesteps: list[int], guidance: float,
                  batch: int = 64) -> list[tuple[str, float, float, float, float]]:
    """(row, real accuracy, fake accuracy, the same on three-object captions): the student's own samples first
    (real = fake = the student), then one row per timestep; RUN holds the teacher, VAE and judge (training.export
    --import). The same captions, student noise and forward noise for every row."""
    device = torch.device("cpu")
    parts = load_student_beside(run, unet, critic, device)
    teacher, vae, judge, scaling, alpha_bar, student = parts[:6]
    held = [s.caption for s in sample_scenes(4343, captions, "train")]
    three = [i for i, c in enumerate(held) if len(c.objects) == 3]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((captions, 4, 16, 16), generator=gen)
    eps = torch.randn((captions, 4, 16, 16), generator=gen)
    empty = teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state

    def judged(images: torch.Tensor) -> tuple[float, float]:
        whole = caption_accuracy(judge, images, held)[0]["caption"]
        if not three:
            return whole, float("nan")
        return whole, caption_accuracy(judge, images[three], [held[i] for i in three])[0]["caption"]

    starts = range(0, captions, batch)
    texts = [teacher.text_encoder(tokenize([c.text for c in held[i : i + batch]])).last_hidden_state for i in starts]
    x = torch.cat([one_step_x0(student, noise[i : i + batch], text, alpha_bar) for i, text in zip(starts, texts)])
    own, own3 = judged(decode(vae, x, scaling).clamp(0, 1))
    rows = [("the student's samples", own, own, own3, own3)]
    for t_value in timesteps:
        reals, fakes = [], []
        for i, text in zip(starts, texts):
            t = torch.full((text.shape[0],), t_value, dtype=torch.long)
            x_t = add_noise(x[i : i + batch], eps[i : i + batch], t, alpha_bar).float()
            real, faked = scores_x0(parts, x_t, t, text, empty, guidance)
            reals.append(real)
            fakes.append(faked)
        real, real3 = judged(decode(vae, torch.cat(reals), scaling).clamp(0, 1))
        faked, faked3 = judged(decode(vae, torch.cat(fakes), scaling).clamp(0, 1))
        rows.append((f"t = {t_value}", real, faked, real3, faked3))
    return rows


def main() -> None:
    parser = analysis_parser(__doc__, "a run's critic_fp16 folder (default: the teacher as fake)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[50, 150, 300, 500, 700, 900])
    parser.add_argument("--guidance", type=float, default=6.0, help="the real score's guidance (call 21's recipe: 6)")
    args = parser.parse_args()

    def analyse(run: Path) -> str:
        rows = score_targets(run, args.unet, args.critic, args.captions, args.timesteps, args.guidance)
        head = (f"The one-step student's samples on {args.captions} seen captions, noised to t and denoised in one evaluation "
                f"by the teacher (w = {args.guidance:g}) and by the fake score ({args.critic or 'the teacher unguided'}); "
                "whole-caption judge accuracy of each x0 (CPU, fp32; `python -m training.score_targets`).")
        lines = [head, "", "| row | teacher x0 | fake x0 | teacher - fake | three objects: teacher | fake | teacher - fake |",
                 "|---|---|---|---|---|---|---|"]
        lines += [f"| {label} | {r:.3f} | {f:.3f} | {r - f:+.3f} | {r3:.3f} | {f3:.3f} | {r3 - f3:+.3f} |"
                  for label, r, f, r3, f3 in rows]
        return "\n".join(lines) + "\n"

    run_analysis(analyse, args.out)


if __name__ == "__main__":
    main()
