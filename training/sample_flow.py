"""Does DMD's gradient improve the student's samples themselves? The one-step student's latents are moved along the
distribution-matching gradient directly (no weights in between), x <- x - step * grad with DMD's grad (training.distill_dmd
.matching_gradient: the fake score's x0 minus the guided teacher's x0 of the re-noised sample, over mean |x - real|),
a fresh timestep and forward noise per sample and iteration; the latents are decoded and judged as they go.

If the judge reads the moved samples better, the objective has room above the student, and the student's weights fail
to follow it (capacity, or the optimization); if it reads them worse, the objective's own fixed point lies at or below
the student, and no run of the recipe can pass it (calls 21-27 ended level with or below their start). The fake score
stays fixed (a critic trained on the student's samples, or the unguided teacher: then grad is the guidance direction).

--direction gan: the samples move along the student's GAN term instead, the gradient of softplus(-logit) of the critic's
classifier on the fake score's mid-block features of the re-noised sample (t uniform in [0, 1000), as distill_dmd draws
it), scaled per sample to mean |grad| = 1 (the term's own scale is its weight's business). The critic must then hold a
classifier (a GAN run's critic_fp16). Call 35 made the classifier matching-aware; this asks whether its pull, alone,
improves what the judge reads.

    python -m training.sample_flow [--unet weights/bundled_turbo/unet] [--critic DIR] [--captions 128]
        [--iterations 40] [--step 0.02] [--draws 1] [--every 10] [--t-range 20 980] [--guidance 6]
        [--direction dmd|gan] [--out FILE.md]
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.analysis import analysis_parser, run_analysis
from training.diffusion import add_noise
from training.distill_dmd import (
    T_MAX,
    T_MIN,
    comparison_range,
    critic_classifier,
    matching_gradient,
    unet_with_mid,
)
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


def gan_flow_step(parts: StudentBeside, classifier: torch.nn.Module, x: torch.Tensor, texts: list[torch.Tensor],
                  gen: torch.Generator, step: float, draws: int = 1) -> None:
    """One iteration along the GAN term, in place: each batch of rows of x moves by -step times the gradient of
    softplus(-logit) (the mean over `draws` draws of t in [0, 1000) and noise), scaled per sample to mean |grad| = 1."""
    start = 0
    for text in texts:
        part = x[start : start + text.shape[0]]
        grad = torch.zeros_like(part)
        for _ in range(draws):
            leaf = part.detach().clone().requires_grad_(True)
            t = torch.randint(0, 1000, (part.shape[0],), generator=gen)
            x_t = add_noise(leaf, torch.randn(part.shape, generator=gen), t, parts.alpha_bar)
            logit = classifier(unet_with_mid(parts.fake, x_t, t, text, mid_only=True)[1])
            grad += torch.autograd.grad(torch.nn.functional.softplus(-logit).sum(), leaf)[0] / draws
        scale = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
        with torch.no_grad():
            part -= step * grad / scale
        start += text.shape[0]


def sample_flow(run: Path, unet: Path, critic: Path | None, captions: int, iterations: int, step: float, every: int,
                t_range: tuple[int, int], guidance: float, draws: int = 1, batch: int = 64,
                direction: str = "dmd") -> list[tuple[int, float, float, float]]:
    """(iteration, whole-caption accuracy, its three-object part, mean |x - x_start|) at iteration 0 and every `every`;
    RUN holds the teacher, VAE and judge (training.export --import). Each iteration's gradient is the mean over `draws`
    draws of (t, forward noise) per sample: the expected gradient's direction, less its noise."""
    lo, hi = comparison_range(t_range)
    if direction == "gan" and critic is None:
        raise ValueError("direction gan needs a critic with a classifier")
    classifier = critic_classifier(critic) if direction == "gan" and critic is not None else None
    parts = load_student_beside(run, unet, critic, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    samples = seen_samples(parts, captions, batch, gen)
    x = samples.x.clone()

    def row(iteration: int) -> tuple[int, float, float, float]:
        return iteration, *judged(parts, x, samples), (x - samples.x).abs().mean().item()

    rows = [row(0)]
    for iteration in range(1, iterations + 1):
        if classifier is not None:
            gan_flow_step(parts, classifier, x, samples.texts, gen, step, draws)
        else:
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
    parser.add_argument("--direction", choices=("dmd", "gan"), default="dmd",
                        help="gan: along the critic classifier's GAN term instead of DMD's gradient")
    parser.set_defaults(captions=128)
    args = parser.parse_args()

    def analyse(run: Path) -> str:
        rows = sample_flow(run, args.unet, args.critic, args.captions, args.iterations, args.step, args.every,
                           tuple(args.t_range), args.guidance, args.draws, direction=args.direction)
        along = "DMD's gradient" if args.direction == "dmd" else "the critic classifier's GAN term (unit mean |grad| per sample)"
        head = (f"The one-step student's latents on {args.captions} seen captions moved along {along} (step "
                f"{args.step:g}, gradient averaged over {args.draws} draws, t in [{args.t_range[0]}, {args.t_range[1]}), teacher w = {args.guidance:g}, fake score: "
                f"{args.critic or 'the teacher unguided'}); whole-caption judge accuracy of the decoded latents "
                "(CPU, fp32; `python -m training.sample_flow`).")
        lines = [head, "", "| iteration | accuracy | three objects | mean abs(x - x_start) |", "|---|---|---|---|"]
        lines += [f"| {k} | {a:.3f} | {a3:.3f} | {d:.3f} |" for k, a, a3, d in rows]
        return "\n".join(lines) + "\n"

    run_analysis(analyse, args.out)


if __name__ == "__main__":
    main()
