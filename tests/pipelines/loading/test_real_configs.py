"""The key map on the REAL architectures (pipelines/configs), with parameters on the meta device:
every parameter has an original-layout name, the names are the published ones, diffusers' own
converter reads them back, and the family is detected from them."""

from __future__ import annotations

import pytest
import torch

from pipelines.loading.single_file import (
    DEFAULT_CONFIGS,
    build_components,
    component_specs,
    detect_family,
    key_maps,
    read_architecture,
    to_original_layout,
)

# Published tensor names of the original checkpoints (facts about the file formats).
KNOWN_KEYS = {
    "sd1": [
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.decoder.up.3.block.0.conv1.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
    ],
    "sd2": [
        "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight",
        "cond_stage_model.model.positional_embedding",
        "cond_stage_model.model.ln_final.weight",
        "model.diffusion_model.input_blocks.1.1.proj_in.weight",
    ],
    "sdxl": [
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
        "conditioner.embedders.1.model.text_projection",
        "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_proj.bias",
    ],
    "controlnet-sd1": [
        "control_model.input_hint_block.14.weight",
        "control_model.zero_convs.11.0.weight",
        "control_model.middle_block_out.0.bias",
    ],
}


class _Keys:
    """A stand-in TensorStore over a dict of meta tensors (for detect_family)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.state)

    def keys(self) -> list[str]:
        return list(self.state)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.state[key].shape)

    def describe(self) -> str:
        return "meta"


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "controlnet-sd1"])
def test_real_architecture_key_map_is_complete(family: str) -> None:
    architecture = read_architecture(DEFAULT_CONFIGS[family])
    specs = component_specs(architecture)
    modules = build_components(architecture, where=family)
    tables = key_maps(family.removeprefix("controlnet-"), modules, specs)
    original: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        state = {k: v for k, v in module.state_dict(keep_vars=True).items() if not k.endswith("position_ids")}
        assert set(tables[name]) == set(state), f"{name}: unmapped {sorted(set(state) - set(tables[name]))[:5]}"
        original.update(to_original_layout(state, tables[name]))
    for key in KNOWN_KEYS[family]:
        assert key in original, key
    if family == "sd1":
        assert original["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    if family == "sd2":
        assert original["cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight"].shape == (3072, 1024)
    if family == "sdxl":
        assert original["conditioner.embedders.1.model.text_projection"].shape == (1280, 1280)
    assert detect_family(_Keys(original)) == family  # type: ignore[arg-type]
    # a UNet-only file is recognised by its cross-attention width (768 / 1024 / 2048)
    if not family.startswith("controlnet"):
        unet_only = {k: v for k, v in original.items() if k.startswith("model.diffusion_model.")}
        if family != "sdxl":  # SDXL's label_emb already says sdxl
            assert detect_family(_Keys(unet_only)) == family  # type: ignore[arg-type]
