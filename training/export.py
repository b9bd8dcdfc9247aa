"""Export a run to the shipped layout, and import it back to resume training.

    python -m training.export RUN_DIR WEIGHTS_DIR            # run -> weights/bundled, judge, classifier
    python -m training.export --import WEIGHTS_DIR RUN_DIR   # shipped weights -> stage checkpoints

weights/bundled is a diffusers-format folder (model_index.json, unet/, vae/, text_encoder/,
scheduler/, tokenizer/) in fp16 safetensors, every file <= 15 MB (sharded with an index json).
The tokenizer files are written from open_clip's CLIP BPE vocabulary (same ids as the hub's).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

from training.checkpoint import STUDENT_CONFIG, load_state, load_weights, save_state, save_weights
from training.diffusion import SCHEDULER_CONFIG
from training.models import VAE_CONFIG, Judge, NoisyLatentClassifier, build_vae
from training.text_unet import TextUNet

MAX_SHARD = "15MB"
BUNDLED, JUDGE, CLASSIFIER, LCM, TURBO = "bundled", "judge", "bundled_classifier", "bundled_lcm", "bundled_turbo"
ONE_STEP_STAGES = ("add", "dmd", "refine")  # training stages whose student is the one-step map served as bundled-turbo
SHARED_WITH_TEACHER = ("text_encoder", "vae", "tokenizer")  # students link these from bundled/


def _write_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt from open_clip's bpe_simple_vocab_16e6 (49,408 ids)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tokenizer.encoder, ensure_ascii=False))
    merges = sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for (a, b), _ in merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


def export(run: Path, weights: Path, tokenizer: bool = True) -> dict[str, int]:
    """Write weights/bundled (+ judge, classifier) from a run's checkpoints; returns bytes per folder."""
    state = json.loads((run / "text_unet" / "state.json").read_text())
    scaling = float(state["metrics"]["scaling_factor"])
    target = weights / BUNDLED
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    model = TextUNet()
    if not load_weights(model, run / "text_unet" / "ema_text_unet.safetensors"):
        raise FileNotFoundError(f"{run / 'text_unet' / 'ema_text_unet.safetensors'} missing")
    model.unet.half().save_pretrained(target / "unet", max_shard_size=MAX_SHARD, safe_serialization=True)
    model.text_encoder.half().save_pretrained(target / "text_encoder", max_shard_size=MAX_SHARD, safe_serialization=True)
    vae = AutoencoderKL(**{**VAE_CONFIG, "scaling_factor": scaling})
    load_weights(vae, run / "autoencoder" / "vae.safetensors")
    vae.half().save_pretrained(target / "vae", max_shard_size=MAX_SHARD, safe_serialization=True)
    (target / "scheduler").mkdir()
    (target / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=1) + "\n")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"] if tokenizer else [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    directions = int(state["metrics"].get("text_directions", 1))
    if directions != 1:  # read by pipelines.loading (ClipTextEncoder both_directions)
        index["darkroom_text_directions"] = directions
    (target / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
    if tokenizer:
        _write_tokenizer(target / "tokenizer")
    sizes = {BUNDLED: sum(p.stat().st_size for p in target.rglob("*") if p.is_file())}
    judge = Judge()
    if load_weights(judge, run / "judge" / "judge.safetensors"):
        save_weights(judge, weights / JUDGE / "judge.safetensors", torch.float16)
        sizes[JUDGE] = (weights / JUDGE / "judge.safetensors").stat().st_size
    classifier = NoisyLatentClassifier()
    if load_weights(classifier, run / "classifier" / "classifier.safetensors"):
        save_weights(classifier, weights / CLASSIFIER / "classifier.safetensors", torch.float16)
        config = {
            "heads": NoisyLatentClassifier.HEADS,
            "classes_per_head": 2,
            "head_order": "shape * 8 + colour (training.data.SHAPES x COLOURS)",
            "input": "VP-scaled latent x / sqrt(1 + sigma^2) and the discrete timestep (0-999)",
            "output": "logits (B, 48, 2)",
        }
        (weights / CLASSIFIER / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        sizes[CLASSIFIER] = (weights / CLASSIFIER / "classifier.safetensors").stat().st_size
    return sizes


def export_student(run: Path, weights: Path, stage: str, checkpoint: str | None = None) -> int:
    """weights/bundled_lcm (stage "lcm") or weights/bundled_turbo (a ONE_STEP_STAGES stage): the student's UNet
    (fp16) and its scheduler config; text encoder, VAE and tokenizer are relative symlinks into
    weights/bundled. The LCM student ships its EMA target with an LCMScheduler config (the serving
    path then applies the consistency boundary); the ADD student ships whichever of its raw and EMA
    weights the stage's own evaluation named (metrics "export"), and so does the DMD student
    (training.distill_dmd, the same one-step map), with the teacher's DDIM config in
    trailing spacing (the one-step sampler evaluates t = 999 and takes the UNet's x0). `checkpoint`
    (a one-step stage's "ema_student", "student" or "best_ema_student") overrides that choice."""
    if stage == "lcm":
        from training.distill_lcm import LCM_SCHEDULER_CONFIG

        folder, checkpoint, scheduler = LCM, "ema_student", dict(LCM_SCHEDULER_CONFIG)
    elif stage in ONE_STEP_STAGES:
        folder, scheduler = TURBO, {**SCHEDULER_CONFIG, "timestep_spacing": "trailing"}
        checkpoint = checkpoint or str(load_state(run / stage).metrics.get("export", "ema_student"))
    else:
        raise ValueError(f"stage must be 'lcm' or one of {ONE_STEP_STAGES}, got {stage!r}")
    target = weights / folder
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    recorded = run / stage / STUDENT_CONFIG  # a grown student's own architecture (training.grow), else the teacher's
    config = json.loads(recorded.read_text()) if recorded.exists() else UNet2DConditionModel.load_config(weights / BUNDLED / "unet")
    unet = UNet2DConditionModel.from_config(config)
    if not load_weights(unet, run / stage / f"{checkpoint}.safetensors"):
        raise FileNotFoundError(f"{run / stage / f'{checkpoint}.safetensors'} missing")
    unet.half().save_pretrained(target / "unet", max_shard_size=MAX_SHARD, safe_serialization=True)
    (target / "scheduler").mkdir()
    (target / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=1) + "\n")
    index = json.loads((weights / BUNDLED / "model_index.json").read_text())
    index.pop("darkroom_text_directions", None)  # the students condition on the caption's encoding alone
    index["scheduler"] = ["diffusers", str(scheduler["_class_name"])]
    (target / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
    for name in SHARED_WITH_TEACHER:
        if (weights / BUNDLED / name).exists():
            (target / name).symlink_to(Path("..") / BUNDLED / name, target_is_directory=True)
    return sum(p.stat().st_size for p in (target / "unet").rglob("*") if p.is_file())


def import_weights(weights: Path, run: Path) -> None:
    """Rebuild stage checkpoints (EMA text encoder + UNet, VAE, judge, classifier, LCM student) from shipped weights."""
    bundled = weights / BUNDLED
    model = TextUNet()
    model.unet.load_state_dict(UNet2DConditionModel.from_pretrained(bundled / "unet").float().state_dict())
    model.text_encoder.load_state_dict(CLIPTextModel.from_pretrained(bundled / "text_encoder").float().state_dict())
    save_weights(model, run / "text_unet" / "ema_text_unet.safetensors")
    shipped_vae = AutoencoderKL.from_pretrained(bundled / "vae")
    vae = build_vae()
    vae.load_state_dict(shipped_vae.float().state_dict())
    save_weights(vae, run / "autoencoder" / "vae.safetensors")
    state = load_state(run / "text_unet")  # the latent scaling, which stages read from here
    state.metrics.setdefault("scaling_factor", float(shipped_vae.config.scaling_factor))
    index = json.loads((bundled / "model_index.json").read_text())
    state.metrics["text_directions"] = int(index.get("darkroom_text_directions", 1))
    save_state(run / "text_unet", state, "text encoder + UNet (imported from shipped weights)")
    lcm_unet = weights / LCM / "unet"
    if (lcm_unet / "config.json").exists() and not (run / "lcm" / "ema_student.safetensors").exists():
        student = UNet2DConditionModel.from_pretrained(lcm_unet).float()  # the shipped LCM student: resume / ADD init
        for name in ("student", "ema_student"):
            save_weights(student, run / "lcm" / f"{name}.safetensors")
    for folder, stage, name in ((JUDGE, "judge", "judge"), (CLASSIFIER, "classifier", "classifier")):
        source = weights / folder / f"{name}.safetensors"
        if source.exists():
            (run / stage).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, run / stage / f"{name}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--import", dest="do_import", action="store_true", help="weights -> run checkpoints")
    parser.add_argument("--no-tokenizer", action="store_true")
    parser.add_argument("--lcm-only", action="store_true", help="export only the LCM student")
    args = parser.parse_args()
    if args.do_import:
        import_weights(args.source, args.dest)
    elif args.lcm_only:
        print({LCM: export_student(args.source, args.dest, "lcm")})
    else:
        sizes = export(args.source, args.dest, tokenizer=not args.no_tokenizer)
        if (args.source / "lcm" / "ema_student.safetensors").exists():
            sizes[LCM] = export_student(args.source, args.dest, "lcm")
        print(sizes)


if __name__ == "__main__":
    main()


def manifest_files(folder: Path) -> str:
    """The `files:` block of a manifest entry for `folder`: every file but README.md, with sha256 and size."""
    import hashlib

    lines = ["    files:"]
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"      - {{path: {path.relative_to(folder)}, sha256: {digest}, size: {path.stat().st_size}}}")
    return "\n".join(lines) + "\n"
