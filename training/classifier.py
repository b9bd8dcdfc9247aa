"""Noisy-latent classifier for classifier guidance (Dhariwal & Nichol 2021, sec. 4, Alg. 1).

p(y | x_t, t) with 48 binary heads (is each (shape, colour) pair in the scene), trained on
noisy latents x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps of training-split scenes
(the held-out pairs are never positive here, as for the generator). Input convention for
guidance: the VP-scaled latent x_t = x / sqrt(1 + sigma^2) and the discrete timestep t.

    python -m training.classifier --out DIR --seconds S [--device cuda]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from training.checkpoint import (
    Deadline,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_main,
)
from training.data import pair_presence, render, sample_scenes, scenes_to_batch
from training.diffusion import add_noise, alphas_cumprod
from training.models import NoisyLatentClassifier
from training.text_unet import encode_latents, load_frozen_vae

STAGE = "classifier"


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 1e-3) -> dict[str, float]:
    """Train (or resume) the classifier for `seconds`; returns held-out-noise accuracy by t range."""
    deadline = Deadline(seconds)
    batch = batch or (512 if device.type == "cuda" else 8)
    directory = out / STAGE
    cuda = device.type == "cuda"
    classifier = NoisyLatentClassifier().to(device)
    load_weights(classifier, directory / "classifier.safetensors")
    state = load_state(directory)
    opt = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=1e-4)
    vae = load_frozen_vae(out, device)
    scaling_path = out / "text_unet" / "state.json"
    gen = torch.Generator(device=device).manual_seed(4000 + state.step)
    if "scaling_factor" not in state.metrics:
        import json

        if scaling_path.exists() and "scaling_factor" in json.loads(scaling_path.read_text()).get("metrics", {}):
            state.metrics["scaling_factor"] = json.loads(scaling_path.read_text())["metrics"]["scaling_factor"]
        else:
            probe = scenes_to_batch(sample_scenes(4, 2048 if cuda else 64, "train")).to(device)
            state.metrics["scaling_factor"] = float(1.0 / encode_latents(vae, render(probe, gen), 1.0, gen).float().std())
    scaling = float(state.metrics["scaling_factor"])
    pool = scenes_to_batch(sample_scenes(50 + state.step, 100_000 if cuda else 500, "train")).to(device)
    alpha_bar = alphas_cumprod(device)
    eval_reserve = 10.0 if cuda else 0.2 * seconds
    while deadline.left() > eval_reserve:
        rows = torch.randint(0, pool.shape.shape[0], (batch,), generator=gen, device=device)
        sb = pool.index(rows)
        latents = encode_latents(vae, render(sb, gen), scaling, gen)
        t = torch.randint(0, 1000, (batch,), generator=gen, device=device)
        x_t = add_noise(latents, torch.randn(latents.shape, generator=gen, device=device), t, alpha_bar)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = classifier(x_t, t)
        loss = F.cross_entropy(logits.float().flatten(0, 1), pair_presence(sb).flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        if state.step % 10 == 0:
            state.log("cross_entropy", loss.item())
    classifier.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        sb = scenes_to_batch(sample_scenes(9, 1024 if cuda else 32, "train")).to(device)
        latents = encode_latents(vae, render(sb, gen), scaling, gen)
        labels = pair_presence(sb)
        for lo, hi in ((0, 300), (300, 600), (600, 900)):
            t = torch.randint(lo, hi, (latents.shape[0],), generator=gen, device=device)
            x_t = add_noise(latents, torch.randn(latents.shape, generator=gen, device=device), t, alpha_bar)
            predicted = classifier(x_t, t).argmax(-1)
            metrics[f"set_exact_t{lo}_{hi}"] = float((predicted == labels).all(dim=1).float().mean())
    state.metrics.update(metrics)
    state.elapsed_s += deadline.elapsed()
    save_weights(classifier, directory / "classifier.safetensors")
    save_state(directory, state, "noisy-latent classifier: cross-entropy")
    return metrics


def main() -> None:
    stage_main(__doc__.splitlines()[0], STAGE, train)


if __name__ == "__main__":
    main()


class GuidanceClassifier(torch.nn.Module):
    """The noisy-latent classifier behind pipelines.guidance.classifier_guidance's interface:
    (x in the variance-exploding view, sigma per row) -> 48 heads of (B, 2) logits.

    x_t = x / sqrt(1 + sigma^2) is the VP latent the classifier was trained on; t is the training
    timestep whose sigma = sqrt((1 - alpha_bar_t) / alpha_bar_t) matches, interpolated in log sigma.
    Labels for a caption: training.data.caption_presence (1 for each mentioned pair, else 0).
    """

    def __init__(self, classifier: NoisyLatentClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        alpha_bar = alphas_cumprod()
        self.register_buffer("log_sigmas", (((1 - alpha_bar) / alpha_bar).sqrt()).log().float(), persistent=False)

    def timesteps(self, sigma: Tensor) -> Tensor:
        """Fractional training timesteps (B,) for sigmas (B,), by linear interpolation in log sigma."""
        log_sigma = sigma.float().clamp(min=1e-6).log().to(self.log_sigmas.device)
        index = torch.searchsorted(self.log_sigmas, log_sigma).clamp(1, len(self.log_sigmas) - 1)
        lo, hi = self.log_sigmas[index - 1], self.log_sigmas[index]
        return (index - 1).float() + ((log_sigma - lo) / (hi - lo)).clamp(0, 1)

    def forward(self, x: Tensor, sigma: Tensor) -> list[Tensor]:
        """x (B, 4, 16, 16) VE latent, sigma (B,) -> 48 logits tensors of shape (B, 2)."""
        shape = (-1, *([1] * (x.dim() - 1)))
        x_vp = x / (1 + sigma.to(x.device, x.dtype).view(shape) ** 2).sqrt()
        logits = self.classifier(x_vp, self.timesteps(sigma).to(x.device))  # (B, 48, 2)
        return list(logits.unbind(dim=1))


def load_guidance_classifier(path: Path, device: torch.device | str = "cpu") -> GuidanceClassifier:
    """The shipped classifier (weights/bundled_classifier/classifier.safetensors) behind the guidance interface."""
    classifier = NoisyLatentClassifier()
    if not load_weights(classifier, path):
        raise FileNotFoundError(f"classifier weights missing: {path}")
    return GuidanceClassifier(classifier.eval()).to(device)
