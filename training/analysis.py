"""What the bundled model's analysis scripts share (training.position_breakdown, training.relation_swap,
training.layout_leak): the served model loaded from the manifest in fp32, optionally with a trained
candidate UNet swapped in, and the Markdown report printed and saved; the one-step student's CPU analyses
(training.adam_first_step, training.score_targets): their command line and a temporary RUN of the shipped weights."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def add_candidate_args(parser: argparse.ArgumentParser) -> None:
    """--unet DIR and --text-directions: a trained UNet of the model's architecture to sample with."""
    parser.add_argument("--unet", type=Path, default=None, help="a diffusers UNet folder to use instead of the model's")
    parser.add_argument("--text-directions", type=int, choices=(1, 2), default=1,
                        help="2: that UNet was trained on the caption's and its word-reversed caption's encodings")


def load_model(model_id: str, device: torch.device | str = "cpu", unet: Path | None = None, text_directions: int = 1) -> object:
    """The manifest's `model_id` in fp32 on `device`; with `unet`, that folder's UNet in place of its own (its
    architecture too: a grown student, training.grow) and the text encoder feeding it `text_directions` (a GPU
    call's teacher_unet not yet shipped)."""
    from pipelines.loading import load_from_manifest

    model = load_from_manifest(model_id, ROOT / "weights_manifest.yaml", ROOT / "weights", device=device, dtype=torch.float32)
    if unet is not None:
        from diffusers import UNet2DConditionModel

        model.denoiser.unet = UNet2DConditionModel.from_pretrained(unet).float().eval().to(device)  # type: ignore[attr-defined]
        model.text_encoder.both_directions = text_directions == 2  # type: ignore[union-attr]
    return model


def model_name(model_id: str, unet: Path | None) -> str:
    """How a report names what it sampled (inside backticks)."""
    return model_id if unet is None else f"{model_id}` with the UNet of `{unet}"


def emit(text: str, out: Path | None) -> None:
    """Print a report, and save it to `out` when given."""
    print(text)
    if out:
        out.write_text(text)


def analysis_parser(doc: str, critic_help: str) -> argparse.ArgumentParser:
    """The one-step student's CPU analyses' command line (training.adam_first_step, training.score_targets): --unet
    (default the shipped student), --critic, --captions, --out (markdown)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--unet", type=Path, default=ROOT / "weights" / "bundled_turbo" / "unet")
    parser.add_argument("--critic", type=Path, default=None, help=critic_help)
    parser.add_argument("--captions", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def run_analysis(analyse: Callable[[Path], str], out: Path | None) -> None:
    """analyse(RUN) on 2 CPU threads with the shipped weights imported into a temporary RUN; its markdown printed and,
    with `out`, written there."""
    from training.export import import_weights

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        import_weights(ROOT / "weights", Path(tmp))
        text = analyse(Path(tmp))
    emit(text, out)
