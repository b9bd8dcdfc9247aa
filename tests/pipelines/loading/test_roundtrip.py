"""Tiny SD1 / SD2 / SDXL / ControlNet models saved as diffusers folders and as original-layout
single files load through the manifest and give outputs bit-identical to the saved models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers.loaders import single_file_utils as oracle
from torch import nn

from pipelines.loading import load_components
from pipelines.loading.single_file import component_specs, key_maps, to_original_layout
from pipelines.manifest import load_manifest
from tests.pipelines.loading.tiny_checkpoints import (
    TINY_ARCHITECTURES,
    assert_same_outputs,
    listed_files,
    save_diffusers_folder,
    write_manifest,
    write_safetensors,
)

FAMILIES = ["sd1", "sd2", "sdxl", "controlnet"]
CPU = torch.device("cpu")


def original_checkpoint(modules: dict[str, nn.Module], name: str) -> dict[str, torch.Tensor]:
    """The modules' tensors under original-layout (ldm / sgm / ControlNet) names."""
    arch = TINY_ARCHITECTURES[name]
    tables = key_maps("sd1" if name == "controlnet" else name, modules, component_specs(arch))
    state: dict[str, torch.Tensor] = {}
    for component, module in modules.items():
        state.update(to_original_layout(module.state_dict(), tables[component]))
    return state


def _entry(name: str, fmt: str, folder: str, files: list[dict], config: str | None = None) -> dict:
    entry = {
        "id": f"{name}-{fmt}",
        "family": "sd1" if name == "controlnet" else name,
        "kind": "controlnet" if name == "controlnet" else "pipeline",
        "format": fmt,
        "path": folder,
        "files": files,
        "dtype": "float32",
    }
    if config:
        entry["config"] = config
    return entry


@pytest.mark.parametrize("name", FAMILIES)
def test_key_map_agrees_with_diffusers_converter(name: str, tiny_models) -> None:
    """Our original-layout names, read by diffusers' own converter, give back the same tensors."""
    modules = tiny_models[name]
    state = original_checkpoint(modules, name)
    for component, module in modules.items():
        if component == "unet":
            converted = oracle.convert_ldm_unet_checkpoint(state, dict(module.config))
        elif component == "vae":
            converted = oracle.convert_ldm_vae_checkpoint(state, dict(module.config))
        elif component == "controlnet":
            converted = oracle.convert_controlnet_checkpoint(state, dict(module.config))
        elif component == "text_encoder" and name in ("sd1", "sdxl"):
            converted = oracle.convert_ldm_clip_checkpoint(state)
        else:
            prefix = "cond_stage_model.model." if name == "sd2" else "conditioner.embedders.1.model."
            converted = oracle.convert_open_clip_checkpoint(module, state, prefix=prefix)
        if component.startswith("text_encoder") and not any(
            k.startswith("text_model.") for k in module.state_dict()
        ):
            converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        expected = {k: v for k, v in module.state_dict().items() if not k.endswith("position_ids")}
        assert set(converted) == set(expected), component
        for key, tensor in expected.items():
            assert torch.equal(converted[key].reshape(tensor.shape), tensor), f"{component}.{key}"


@pytest.mark.parametrize("name", FAMILIES)
def test_single_file_roundtrip(name: str, tiny_models, tmp_path: Path) -> None:
    modules = tiny_models[name]
    state = original_checkpoint(modules, name)
    if name == "sd2":
        # Real SD2 checkpoints hold all 24 OpenCLIP layers; diffusers keeps 23 (penultimate).
        extra = {k.replace("resblocks.1.", "resblocks.2."): v.clone() for k, v in state.items()
                 if ".resblocks.1." in k}
        state.update(extra)
    folder = tmp_path / "weights" / "model"
    write_safetensors(folder / "model.safetensors", state)
    (folder / "arch.json").write_text(json.dumps(TINY_ARCHITECTURES[name]))
    files = listed_files(folder)
    manifest = load_manifest(
        write_manifest(tmp_path / "m.yaml", [_entry(name, "single_file", "model", files, "arch.json")])
    )
    loaded = load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    assert set(loaded.components) == set(modules)
    assert_same_outputs(loaded.components, modules, name)
    if name != "controlnet":
        assert loaded.scheduler_config["beta_schedule"] == "scaled_linear"


@pytest.mark.parametrize("name", FAMILIES)
def test_diffusers_folder_roundtrip(name: str, tiny_models, tmp_path: Path) -> None:
    modules = tiny_models[name]
    folder = tmp_path / "weights" / "model"
    save_diffusers_folder(modules, folder, name)
    manifest = load_manifest(
        write_manifest(tmp_path / "m.yaml", [_entry(name, "diffusers", "model", listed_files(folder))])
    )
    loaded = load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    assert set(loaded.components) == set(modules)
    assert_same_outputs(loaded.components, modules, name)


def test_fp16_variant_and_dtype(tiny_models, tmp_path: Path) -> None:
    """`variant: fp16` reads *.fp16.safetensors; tensors arrive in the requested dtype."""
    modules = tiny_models["sd1"]
    folder = tmp_path / "weights" / "model"
    save_diffusers_folder(modules, folder, "sd1")
    for component in ("unet", "vae", "text_encoder"):
        sub = folder / component
        (weights,) = [p for p in sub.glob("*.safetensors")]
        state = {k: v.half() for k, v in modules[component].state_dict().items()
                 if not k.endswith("position_ids")}
        write_safetensors(sub / weights.name.replace(".safetensors", ".fp16.safetensors"), state)
        weights.unlink()  # only the variant is left
    entry = {**_entry("sd1", "diffusers", "model", listed_files(folder)), "variant": "fp16"}
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [entry]))
    loaded = load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float16)
    unet = loaded.components["unet"]
    assert {p.dtype for p in unet.parameters()} == {torch.float16}
    expected = modules["unet"].conv_in.weight.half()
    assert torch.equal(unet.conv_in.weight, expected)
    assert "model/unet/diffusion_pytorch_model.fp16.safetensors" in loaded.files


def test_sharded_text_encoder(tiny_models, tmp_path: Path) -> None:
    """Shards listed by a safetensors index json load as one state dict."""
    modules = tiny_models["sd1"]
    folder = tmp_path / "weights" / "model"
    save_diffusers_folder(modules, folder, "sd1")
    sub = folder / "text_encoder"
    (sub / "model.safetensors").unlink()
    state = {k: v for k, v in modules["text_encoder"].state_dict().items() if not k.endswith("position_ids")}
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for shard, shard_keys in halves.items():
        write_safetensors(sub / shard, {k: state[k] for k in shard_keys})
        weight_map.update({k: shard for k in shard_keys})
    (sub / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    manifest = load_manifest(
        write_manifest(tmp_path / "m.yaml", [_entry("sd1", "diffusers", "model", listed_files(folder))])
    )
    loaded = load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    assert_same_outputs({"text_encoder": loaded.components["text_encoder"]},
                        {"text_encoder": modules["text_encoder"]}, "sd1")
    assert sorted(f for f in loaded.files if "text_encoder/model-" in f) == [
        "model/text_encoder/model-00001-of-00002.safetensors",
        "model/text_encoder/model-00002-of-00002.safetensors",
    ]


def test_t5_encoder_tied_embedding_and_fp32_feed_forward(tmp_path: Path) -> None:
    """PixArt's T5: the file holds one of the tied embeddings; `wo` stays fp32 in an fp16 load."""
    from transformers import T5Config, T5EncoderModel

    from pipelines.loading.diffusers_folder import load_component

    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(d_model=16, d_ff=32, num_layers=2, num_heads=2, d_kv=8, vocab_size=100)).eval()
    t5.save_pretrained(tmp_path / "m" / "text_encoder")
    loaded, _ = load_component(tmp_path, "m/text_encoder", variant=None, device=CPU, dtype=torch.float32)
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).last_hidden_state, t5(ids).last_hidden_state)
    half, _ = load_component(tmp_path, "m/text_encoder", variant=None, device=CPU, dtype=torch.float16)
    dtypes = {n: p.dtype for n, p in half.named_parameters()}
    assert dtypes["encoder.block.0.layer.1.DenseReluDense.wo.weight"] == torch.float32
    assert dtypes["encoder.block.0.layer.0.SelfAttention.q.weight"] == torch.float16
    assert torch.equal(half.shared.weight, half.encoder.embed_tokens.weight)


def test_dit_folder_with_legacy_transformer2d_class_name(tmp_path: Path) -> None:
    """Hub DiT folders name `Transformer2DModel`; norm_type ada_norm_zero makes it a DiT."""
    from diffusers import DiTTransformer2DModel

    from pipelines.loading.diffusers_folder import load_diffusers_folder

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10).eval()
    folder = tmp_path / "dit"
    dit.save_pretrained(folder / "transformer")
    config = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**config, "_class_name": "Transformer2DModel"}))
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "DiTPipeline", "transformer": ["diffusers", "Transformer2DModel"]}))
    loaded = load_diffusers_folder(tmp_path, "dit", variant=None, device=CPU, dtype=torch.float32)
    model = loaded.components["transformer"]
    assert type(model).__name__ == "DiTTransformer2DModel"
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 900]), torch.tensor([1, 9])
    with torch.no_grad():
        assert torch.equal(model(x, timestep=t, class_labels=y).sample, dit(x, timestep=t, class_labels=y).sample)


def test_controlnet_single_file_without_prefix(tiny_models, tmp_path: Path) -> None:
    """Some ControlNet releases drop the `control_model.` prefix; the keys still say ControlNet."""
    modules = tiny_models["controlnet"]
    state = {k.removeprefix("control_model."): v for k, v in original_checkpoint(modules, "controlnet").items()}
    assert "input_hint_block.0.weight" in state
    folder = tmp_path / "weights" / "cn"
    write_safetensors(folder / "cn.safetensors", state)
    (folder / "arch.json").write_text(json.dumps(TINY_ARCHITECTURES["controlnet"]))
    entry = _entry("controlnet", "single_file", "cn", listed_files(folder), "arch.json")
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [entry]))
    loaded = load_components(manifest.get("controlnet-single_file"), tmp_path / "weights", CPU, torch.float32)
    assert_same_outputs(loaded.components, modules, "controlnet")
