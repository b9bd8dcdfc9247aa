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
from training.diffusion import add_noise
from training.one_step import judged, load_student_beside, scores_x0, seen_samples


@torch.no_grad()
def score_targets(run: Path, unet: Path, critic: Path | None, captions: int, timesteps: list[int], guidance: float,
                  batch: int = 64) -> list[tuple[str, float, float, float, float]]:
    """(row, real accuracy, fake accuracy, the same on three-object captions): the student's own samples first
    (real = fake = the student), then one row per timestep; RUN holds the teacher, VAE and judge (training.export
    --import). The same captions, student noise and forward noise for every row."""
    parts = load_student_beside(run, unet, critic, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    samples = seen_samples(parts, captions, batch, gen)
    eps = torch.randn((captions, 4, 16, 16), generator=gen)
    x = samples.x
    own, own3 = judged(parts, x, samples)
    rows = [("the student's samples", own, own, own3, own3)]
    for t_value in timesteps:
        reals, fakes = [], []
        for i, text in zip(range(0, captions, batch), samples.texts):
            t = torch.full((text.shape[0],), t_value, dtype=torch.long)
            x_t = add_noise(x[i : i + batch], eps[i : i + batch], t, parts.alpha_bar).float()
            real, faked = scores_x0(parts, x_t, t, text, samples.empty, guidance)
            reals.append(real)
            fakes.append(faked)
        real, real3 = judged(parts, torch.cat(reals), samples)
        faked, faked3 = judged(parts, torch.cat(fakes), samples)
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
