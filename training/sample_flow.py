"""Does DMD's gradient improve the student's samples themselves? The one-step student's latents are moved along the
distribution-matching gradient directly (no weights in between), x <- x - step * grad with DMD's grad (training.distill_dmd
.matching_gradient: the fake score's x0 minus the guided teacher's x0 of the re-noised sample, over mean |x - real|),
a fresh timestep and forward noise per sample and iteration; the latents are decoded and judged as they go.

If the judge reads the moved samples better, the objective has room above the student, and the student's weights fail
to follow it (capacity, or the optimization); if it reads them worse, the objective's own fixed point lies at or below
the student, and no run of the recipe can pass it (calls 21-27 ended level with or below their start). The fake score
stays fixed (a critic trained on the student's samples, or the unguided teacher: then grad is the guidance direction).

    python -m training.sample_flow [--unet weights/bundled_turbo/unet] [--critic DIR] [--captions 128]
        [--iterations 40] [--step 0.02] [--draws 1] [--every 10] [--t-range 20 980] [--guidance 6] [--out FILE.md]
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.analysis import analysis_parser, run_analysis
from training.diffusion import add_noise
from training.distill_dmd import T_MAX, T_MIN, comparison_range, matching_gradient
from training.one_step import StudentBeside, judged, load_student_beside, scores_x0, seen_samples


@torch.no_grad()
def flow_step(parts: StudentBeside, x: torch.Tensor, texts: list[torch.Tensor], empty: torch.Tensor, gen: torch.Generator,
              t_range: tuple[int, int], guidance: float, step: float, draws: int = 1) -> None:
    """One iteration of the flow, in place: each batch of rows of latents x (texts[k]: the k-th batch's caption
    embeddings) moves by -step times its matching gradient, the mean over `draws` draws of (t in t_range, noise)."""
    start = 0
    for text in texts:
        part = x[start : start + text.shape[0]]
        grad = torch.zeros_like(part)
        for _ in range(draws):
            t = torch.randint(*t_range, (part.shape[0],), generator=gen)
            x_t = add_noise(part, torch.randn(part.shape, generator=gen), t, parts.alpha_bar).float()
            real, faked = scores_x0(parts, x_t, t, text, empty, guidance)
            grad += matching_gradient(part, real, faked) / draws
        part -= step * grad
        start += text.shape[0]


@torch.no_grad()
def sample_flow(run: Path, unet: Path, critic: Path | None, captions: int, iterations: int, step: float, every: int,
                t_range: tuple[int, int], guidance: float, draws: int = 1, batch: int = 64) -> list[tuple[int, float, float, float]]:
    """(iteration, whole-caption accuracy, its three-object part, mean |x - x_start|) at iteration 0 and every `every`;
    RUN holds the teacher, VAE and judge (training.export --import). Each iteration's gradient is the mean over `draws`
    draws of (t, forward noise) per sample: the expected gradient's direction, less its noise."""
    lo, hi = comparison_range(t_range)
    parts = load_student_beside(run, unet, critic, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    samples = seen_samples(parts, captions, batch, gen)
    x = samples.x.clone()

    def row(iteration: int) -> tuple[int, float, float, float]:
        return iteration, *judged(parts, x, samples), (x - samples.x).abs().mean().item()

    rows = [row(0)]
    for iteration in range(1, iterations + 1):
        flow_step(parts, x, samples.texts, samples.empty, gen, (lo, hi), guidance, step, draws)
        if iteration % every == 0 or iteration == iterations:
            rows.append(row(iteration))
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = analysis_parser(__doc__, "a run's critic_fp16 folder (default: the teacher unguided as fake)")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--step", type=float, default=0.02, help="each iteration moves x by step * grad")
    parser.add_argument("--every", type=int, default=10, help="decode and judge every this many iterations")
    parser.add_argument("--draws", type=int, default=1, help="(t, noise) draws averaged into each iteration's gradient")
    parser.add_argument("--t-range", type=int, nargs=2, default=(T_MIN, T_MAX), metavar=("LO", "HI"))
    parser.add_argument("--guidance", type=float, default=6.0, help="the real score's guidance (call 21's recipe: 6)")
    parser.set_defaults(captions=128)
    args = parser.parse_args()

    def analyse(run: Path) -> str:
        rows = sample_flow(run, args.unet, args.critic, args.captions, args.iterations, args.step, args.every,
                           tuple(args.t_range), args.guidance, args.draws)
        head = (f"The one-step student's latents on {args.captions} seen captions moved along DMD's gradient (step "
                f"{args.step:g}, gradient averaged over {args.draws} draws, t in [{args.t_range[0]}, {args.t_range[1]}), teacher w = {args.guidance:g}, fake score: "
                f"{args.critic or 'the teacher unguided'}); whole-caption judge accuracy of the decoded latents "
                "(CPU, fp32; `python -m training.sample_flow`).")
        lines = [head, "", "| iteration | accuracy | three objects | mean abs(x - x_start) |", "|---|---|---|---|"]
        lines += [f"| {k} | {a:.3f} | {a3:.3f} | {d:.3f} |" for k, a, a3, d in rows]
        return "\n".join(lines) + "\n"

    run_analysis(analyse, args.out)


if __name__ == "__main__":
    main()
