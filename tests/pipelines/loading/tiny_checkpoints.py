"""Tiny random SD1 / SD2 / SDXL / ControlNet models, in the layout of pipelines/configs/*.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "norm_num_groups": 8,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}
TINY_CLIP = {
    "class": "CLIPTextModel",
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 32,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
TINY_UNET_SD1 = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [16, 16, 32],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}

TINY_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd1": {
        "family": "sd1",
        "unet": TINY_UNET_SD1,
        "vae": TINY_VAE,
        "text_encoder": TINY_CLIP,
        "scheduler": SCHEDULER,
    },
    "sd2": {
        "family": "sd2",
        "unet": {**TINY_UNET_SD1, "attention_head_dim": [2, 4, 4], "use_linear_projection": True},
        "vae": TINY_VAE,
        "text_encoder": {**TINY_CLIP, "hidden_act": "gelu", "pad_token_id": 0},
        "scheduler": SCHEDULER,
    },
    "sdxl": {
        "family": "sdxl",
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "layers_per_block": 2,
            "block_out_channels": [16, 32],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "transformer_layers_per_block": [1, 2],
            "attention_head_dim": [2, 4],
            "cross_attention_dim": 64,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
            "norm_num_groups": 8,
        },
        "vae": {**TINY_VAE, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": TINY_CLIP,
        "text_encoder_2": {**TINY_CLIP, "class": "CLIPTextModelWithProjection", "hidden_act": "gelu"},
        "scheduler": SCHEDULER,
    },
    "controlnet": {
        "class": "ControlNetModel",
        "config": {
            "in_channels": 4,
            "layers_per_block": 2,
            "block_out_channels": [16, 32],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "conditioning_embedding_out_channels": [8, 8, 16, 16],
            "norm_num_groups": 8,
        },
    },
}


def _clip(config: dict[str, Any]) -> nn.Module:
    cfg = {k: v for k, v in config.items() if k != "class"}
    cls = CLIPTextModelWithProjection if config["class"] == "CLIPTextModelWithProjection" else CLIPTextModel
    return cls(CLIPTextConfig(**cfg))


def build_tiny(name: str, seed: int = 0) -> dict[str, nn.Module]:
    """Random modules of a tiny architecture, keyed by diffusers folder name."""
    torch.manual_seed(seed)
    arch = TINY_ARCHITECTURES[name]
    if name == "controlnet":
        modules: dict[str, nn.Module] = {"controlnet": ControlNetModel.from_config(arch["config"])}
    else:
        modules = {
            "unet": UNet2DConditionModel.from_config(arch["unet"]),
            "vae": AutoencoderKL.from_config(arch["vae"]),
            "text_encoder": _clip(arch["text_encoder"]),
        }
        if "text_encoder_2" in arch:
            modules["text_encoder_2"] = _clip(arch["text_encoder_2"])
    for module in modules.values():
        # Random init leaves many zeros (zero convs, zero-init out layers): fill every tensor so
        # a wrong key map cannot hide behind two zero tensors being equal.
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn_like(p) * 0.05)
        module.eval()
    return modules


def save_diffusers_folder(modules: dict[str, nn.Module], folder: Path, name: str) -> None:
    """A diffusers-format folder: model_index.json, component subfolders, scheduler config."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "controlnet":
        modules["controlnet"].save_pretrained(folder)
        return
    index: dict[str, Any] = {"_class_name": "StableDiffusionPipeline", "safety_checker": [None, None]}
    for component, module in modules.items():
        module.save_pretrained(folder / component)
        library = "diffusers" if component in ("unet", "vae") else "transformers"
        index[component] = [library, type(module).__name__]
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (folder / "model_index.json").write_text(json.dumps(index))


def tiny_architecture(name: str) -> dict[str, Any]:
    return copy.deepcopy(TINY_ARCHITECTURES[name])


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def write_manifest(path: Path, models: list[dict[str, Any]], default_model: str | None = None) -> Path:
    """A manifest YAML with these entries (the first is the default unless named)."""
    import yaml

    models = list(models)
    if default_model is None and models[0].get("kind") == "controlnet":
        # a manifest's default must be a pipeline: add one that attaches the controlnet
        models.append({"id": "base", "family": models[0]["family"], "format": "diffusers",
                       "path": "base", "controlnets": [models[0]["id"]]})
        default_model = "base"
    data = {"default_model": default_model or models[0]["id"], "models": models}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def listed_files(folder: Path, *, with_hashes: bool = True) -> list[dict[str, Any]]:
    """Manifest `files` entries for every file under a model folder."""
    import hashlib

    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if with_hashes else None
            files.append({"path": p.relative_to(folder).as_posix(), "sha256": digest})
    return files


def unet_inputs(arch: dict[str, Any], seed: int = 1) -> dict[str, torch.Tensor]:
    """Fixed random inputs for a UNet / ControlNet of a tiny architecture."""
    g = torch.Generator().manual_seed(seed)
    unet = arch.get("unet") or arch["config"]
    inputs = {
        "sample": torch.randn(2, 4, 8, 8, generator=g),
        "timestep": torch.tensor([10, 500]),
        "encoder_hidden_states": torch.randn(2, 7, unet["cross_attention_dim"], generator=g),
    }
    if unet.get("addition_embed_type") == "text_time":
        inputs["added_cond_kwargs"] = {  # type: ignore[assignment]
            "text_embeds": torch.randn(2, 32, generator=g),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        }
    return inputs


def assert_same_outputs(loaded: dict[str, nn.Module], original: dict[str, nn.Module], name: str) -> None:
    """Every component holds exactly the weights of the module it was saved from and gives its outputs up to fp32
    rounding. Not bitwise: MKL does not promise the same bits for the same product of data at other addresses (outside
    its CNR mode), and on some CPUs (AVX-512, AMX) it does not give them: the SD2 UNet's loaded copy first differs at a
    Linear with equal inputs and weights, by 1.5e-8."""
    arch = TINY_ARCHITECTURES[name]

    def close(a: torch.Tensor, b: torch.Tensor, msg: str | None = None) -> None:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=msg)

    with torch.no_grad():
        for component, module in original.items():
            other = loaded[component]
            theirs = dict(other.named_parameters())
            for key, weight in module.named_parameters():
                assert torch.equal(theirs[key], weight), f"{component}.{key}"
            if component in ("unet",):
                inputs = unet_inputs(arch)
                close(other(**inputs).sample, module(**inputs).sample, msg=component)
            elif component == "controlnet":
                inputs = unet_inputs(arch)
                cond = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
                a = other(**inputs, controlnet_cond=cond, return_dict=False)
                b = module(**inputs, controlnet_cond=cond, return_dict=False)
                for x, y in zip([*a[0], a[1]], [*b[0], b[1]]):
                    close(x, y)
                assert float(b[1].abs().max()) > 0  # not a trivially zero output
            elif component == "vae":
                image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
                latents = module.encode(image).latent_dist.mean
                close(other.encode(image).latent_dist.mean, latents)
                close(other.decode(latents).sample, module.decode(latents).sample)
            else:
                ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407, 0, 0]])
                out_a, out_b = other(ids, output_hidden_states=True), module(ids, output_hidden_states=True)
                close(out_a.hidden_states[-2], out_b.hidden_states[-2])
                close(out_a.last_hidden_state, out_b.last_hidden_state)
                if hasattr(out_b, "text_embeds"):
                    close(out_a.text_embeds, out_b.text_embeds)
