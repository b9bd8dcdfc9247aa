"""Single-file original-layout checkpoints (SD1, SD2, SDXL, ControlNet) into diffusers classes.

The original (CompVis / Stability "ldm" / "sgm") layout keeps the whole pipeline in one state
dict under fixed prefixes:

    model.diffusion_model.*                UNet (input_blocks / middle_block / output_blocks)
    first_stage_model.*                    KL autoencoder (encoder.down.N.block.M, mid.attn_1 ...)
    cond_stage_model.transformer.*         SD1: CLIP ViT-L text model, transformers layout
    cond_stage_model.model.*               SD2: OpenCLIP ViT-H text tower (fused qkv)
    conditioner.embedders.0.transformer.*  SDXL: CLIP ViT-L, transformers layout
    conditioner.embedders.1.model.*        SDXL: OpenCLIP bigG text tower (fused qkv, projection)
    control_model.*                        ControlNet (input_hint_block, zero_convs)

Every rename lives in this module as a table from diffusers key -> original key (+ a transform),
built from the diffusers module's own key list and its config. The same table read backwards
writes an original-layout checkpoint (`to_original_layout`), which the tests round-trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pipelines.loading.components import build_empty
from pipelines.loading.errors import CheckpointKeyError, WeightsError
from pipelines.loading.tensors import TensorSource, TensorStore, populate

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# The family's default architecture config (pipelines/configs/<name>.json).
DEFAULT_CONFIGS = {
    "sd1": "sd15",
    "sd2": "sd21_base_and_sd_turbo",
    "sdxl": "sdxl_base_and_sdxl_turbo",
    "controlnet-sd1": "controlnet_sd15",
}

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT2_PREFIX = "conditioner.embedders.1.model."
CONTROLNET_PREFIX = "control_model."

# Cross-attention context width of each family's UNet (attn2.to_k input features).
CONTEXT_DIM_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}

Op = Literal["copy", "squeeze", "transpose", "chunk0", "chunk1", "chunk2"]


@dataclass(frozen=True)
class KeyRule:
    """A diffusers parameter comes from the first present `sources` key, through `op`."""

    sources: tuple[str, ...]  # original-layout key candidates; the first is canonical
    op: Op = "copy"


KeyMap = dict[str, KeyRule]  # diffusers key -> rule


# --------------------------------------------------------------------------------------------
# UNet and ControlNet


# ResNet block names: diffusers -> ldm.
_RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL pooled text + size embedding
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET_RENAMES.get(head, head)}.{tail}"


def _layers_per_block(config: dict[str, Any], n_blocks: int) -> list[int]:
    value = config.get("layers_per_block", 2)
    return [int(value)] * n_blocks if isinstance(value, int) else [int(v) for v in value]


def _unet_body_key(key: str, config: dict[str, Any], has_up_attention: set[int]) -> str | None:
    """The ldm key of a diffusers UNet / ControlNet body key, None when it has no counterpart."""
    for new, old in _UNET_TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    n_blocks = len(config["block_out_channels"])
    layers = _layers_per_block(config, n_blocks)
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + sum(layers[b] + 1 for b in range(i)) + j
        return f"input_blocks.{index}.0.{_resnet(rest)}" if part == "resnets" else (
            f"input_blocks.{index}.1.{rest}"
        )
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        index = 1 + sum(layers[b] + 1 for b in range(i)) + layers[i]
        return f"input_blocks.{index}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    up_layers = list(reversed(layers))
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = sum(up_layers[b] + 1 for b in range(i)) + j
        return f"output_blocks.{index}.0.{_resnet(rest)}" if part == "resnets" else (
            f"output_blocks.{index}.1.{rest}"
        )
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        index = sum(up_layers[b] + 1 for b in range(i)) + up_layers[i]
        slot = 2 if i in has_up_attention else 1
        return f"output_blocks.{index}.{slot}.conv.{m[2]}"
    return None


def unet_key_map(keys: Iterable[str], config: dict[str, Any], prefix: str = UNET_PREFIX) -> KeyMap:
    """diffusers UNet2DConditionModel keys -> ldm `model.diffusion_model.*` keys."""
    keys = list(keys)
    has_up_attention = {
        int(m[1]) for k in keys if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))
    }
    table: KeyMap = {}
    for key in keys:
        old = _unet_body_key(key, config, has_up_attention)
        if old is not None:
            table[key] = KeyRule((prefix + old,))
    return table


def controlnet_key_map(
    keys: Iterable[str], config: dict[str, Any], prefix: str = CONTROLNET_PREFIX
) -> KeyMap:
    """diffusers ControlNetModel keys -> original `control_model.*` keys."""
    keys = list(keys)
    n_hint_blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    table: KeyMap = {}
    for key in keys:
        old: str | None
        if m := re.fullmatch(r"controlnet_cond_embedding\.conv_in\.(.+)", key):
            old = f"input_hint_block.0.{m[1]}"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
            old = f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.conv_out\.(.+)", key):
            old = f"input_hint_block.{2 * (n_hint_blocks + 1)}.{m[1]}"
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
            old = f"zero_convs.{m[1]}.0.{m[2]}"
        elif m := re.fullmatch(r"controlnet_mid_block\.(.+)", key):
            old = f"middle_block_out.0.{m[1]}"
        else:
            old = _unet_body_key(key, config, set())
        if old is not None:
            table[key] = KeyRule((prefix + old,))
    return table


# --------------------------------------------------------------------------------------------
# KL autoencoder

_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut.", "nin_shortcut.", 1)


def vae_key_map(keys: Iterable[str], config: dict[str, Any], prefix: str = VAE_PREFIX) -> KeyMap:
    """diffusers AutoencoderKL keys -> ldm `first_stage_model.*` keys."""
    n_blocks = len(config["block_out_channels"])
    table: KeyMap = {}
    for key in keys:
        op: Op = "copy"
        old: str | None = None
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            old = f"{m[1]}.norm_out.{m[2]}"
        elif re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\..+|(post_)?quant_conv\..+", key):
            old = key
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            old = f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            old = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            old = f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            old = f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            old = f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
            name = _VAE_ATTENTION.get(m[2])
            if name is not None:
                old = f"{m[1]}.mid.attn_1.{name}.{m[3]}"
                # ldm stores q/k/v/proj_out as 1x1 convs (C, C, 1, 1); diffusers as linears.
                if m[3] == "weight" and name != "norm":
                    op = "squeeze"
        if old is not None:
            table[key] = KeyRule((prefix + old,), op)
    return table


# --------------------------------------------------------------------------------------------
# Text encoders

_TEXT_MODEL = "text_model."


def _strip_text_model(key: str) -> str:
    return key.removeprefix(_TEXT_MODEL)


def clip_key_map(keys: Iterable[str], prefix: str) -> KeyMap:
    """transformers CLIP text keys -> the same keys under `prefix` (+ `text_model.` or not)."""
    table: KeyMap = {}
    for key in keys:
        body = _strip_text_model(key)
        if body == "embeddings.position_ids":
            continue
        if key == "text_projection.weight":
            table[key] = KeyRule((prefix + key,))
            continue
        table[key] = KeyRule((f"{prefix}{_TEXT_MODEL}{body}", prefix + body))
    return table


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_key_map(keys: Iterable[str], prefix: str) -> KeyMap:
    """transformers CLIP text keys -> OpenCLIP text tower keys (fused qkv, transposed projection)."""
    table: KeyMap = {}
    for key in keys:
        body = _strip_text_model(key)
        rule: KeyRule | None = None
        if body == "embeddings.token_embedding.weight":
            rule = KeyRule((prefix + "token_embedding.weight",))
        elif body == "embeddings.position_embedding.weight":
            rule = KeyRule((prefix + "positional_embedding",))
        elif m := re.fullmatch(r"final_layer_norm\.(weight|bias)", body):
            rule = KeyRule((f"{prefix}ln_final.{m[1]}",))
        elif key == "text_projection.weight":
            # OpenCLIP computes x @ P with P (width, dim); nn.Linear stores P^T.
            rule = KeyRule((prefix + "text_projection",), "transpose")
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", body):
            chunk: Op = {"q": "chunk0", "k": "chunk1", "v": "chunk2"}[m[2]]  # type: ignore[assignment]
            rule = KeyRule((f"{prefix}transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}",), chunk)
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", body):
            name = _OPEN_CLIP_LAYER.get(m[2])
            if name is not None:
                rule = KeyRule((f"{prefix}transformer.resblocks.{m[1]}.{name}.{m[3]}",))
        if rule is not None:
            table[key] = rule
    return table


# --------------------------------------------------------------------------------------------
# Reading and writing through a key map


def _after_op(shape: tuple[int, ...], op: Op) -> tuple[int, ...]:
    if op == "squeeze" and len(shape) == 4 and shape[2:] == (1, 1):
        return shape[:2]
    if op == "transpose" and len(shape) == 2:
        return (shape[1], shape[0])
    if op.startswith("chunk") and shape and shape[0] % 3 == 0:
        return (shape[0] // 3, *shape[1:])
    return shape


def _transform(op: Op) -> Any:
    if op == "copy":
        return None
    if op == "squeeze":
        return lambda t: t.reshape(t.shape[0], t.shape[1]) if t.ndim == 4 else t
    if op == "transpose":
        return lambda t: t.t()
    index = int(op[-1])
    return lambda t: t.chunk(3, dim=0)[index]


def sources_from_map(table: KeyMap, store: TensorStore) -> dict[str, TensorSource]:
    """Resolve each rule against the checkpoint's keys (first present candidate)."""
    sources: dict[str, TensorSource] = {}
    for target, rule in table.items():
        for candidate in rule.sources:
            if candidate in store:
                shape = _after_op(store.shape(candidate), rule.op)
                sources[target] = TensorSource(candidate, shape, _transform(rule.op))
                break
    return sources


def to_original_layout(state: dict[str, Tensor], table: KeyMap) -> dict[str, Tensor]:
    """Write diffusers tensors under their original-layout names (the key map read backwards)."""
    out: dict[str, Tensor] = {}
    chunks: dict[str, dict[int, Tensor]] = {}
    for target, rule in table.items():
        if target not in state:
            continue
        tensor, source = state[target], rule.sources[0]
        if rule.op == "copy":
            out[source] = tensor
        elif rule.op == "squeeze":
            out[source] = tensor[:, :, None, None]
        elif rule.op == "transpose":
            out[source] = tensor.t()
        else:
            chunks.setdefault(source, {})[int(rule.op[-1])] = tensor
    for source, parts in chunks.items():
        out[source] = torch.cat([parts[i] for i in range(3)], dim=0)
    return {k: v.contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Architecture configs and family detection


def read_architecture(name_or_path: str | Path) -> dict[str, Any]:
    """A pipelines/configs/<name>.json by name, or any JSON file of the same layout by path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CONFIG_DIR / f"{name_or_path}.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise WeightsError(f"architecture config {name_or_path}: not found (built-in: {known})") from exc
    except json.JSONDecodeError as exc:
        raise WeightsError(f"architecture config {path}: not valid JSON: {exc}") from exc
    return value


def detect_family(store: TensorStore) -> str:
    """sd1 / sd2 / sdxl / controlnet-sd1 (-sd2, -sdxl) from a checkpoint's keys and shapes."""
    keys = store.keys()

    def any_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if any(".input_hint_block." in "." + k for k in keys) or any_prefix(CONTROLNET_PREFIX):
        dim = _context_dim(store, _controlnet_prefix(store))
        return "controlnet-" + CONTEXT_DIM_FAMILY.get(dim or 768, "sd1")
    if any_prefix("conditioner.embedders.") or any_prefix(UNET_PREFIX + "label_emb."):
        return "sdxl"
    if any_prefix(SD2_TEXT_PREFIX):
        return "sd2"
    if any_prefix(SD1_TEXT_PREFIX):
        return "sd1"
    dim = _context_dim(store, UNET_PREFIX)
    if dim in CONTEXT_DIM_FAMILY:
        return CONTEXT_DIM_FAMILY[dim]
    raise WeightsError(
        f"{store.describe()}: not an SD1/SD2/SDXL/ControlNet original-layout checkpoint "
        "(no cond_stage_model / conditioner / control_model keys, unknown context width)"
    )


def _context_dim(store: TensorStore, prefix: str) -> int | None:
    for key in store:
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight"):
            return store.shape(key)[1]
    return None


def _controlnet_prefix(store: TensorStore) -> str:
    return CONTROLNET_PREFIX if any(k.startswith(CONTROLNET_PREFIX) for k in store) else ""


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class SingleFileModel:
    """The torch components of a single-file checkpoint and its scheduler config."""

    family: str  # detected: sd1 / sd2 / sdxl / controlnet-sd1 ...
    components: dict[str, nn.Module]
    scheduler_config: dict[str, Any]
    architecture: dict[str, Any]


def component_specs(architecture: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Component name -> (class name, config dict) from an architecture JSON."""
    if architecture.get("class", "").startswith("ControlNetModel"):
        return {"controlnet": ("ControlNetModel", architecture["config"])}
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "unet": ("UNet2DConditionModel", architecture["unet"]),
        "vae": ("AutoencoderKL", architecture["vae"]),
    }
    for name in ("text_encoder", "text_encoder_2"):
        if name in architecture:
            config = architecture[name]
            specs[name] = (str(config.get("class", "CLIPTextModel")), config)
    return specs


def key_maps(family: str, modules: dict[str, nn.Module], specs: dict[str, Any],
             control_prefix: str = CONTROLNET_PREFIX) -> dict[str, KeyMap]:
    """The diffusers -> original key table of each component of a `family` checkpoint."""
    tables: dict[str, KeyMap] = {}
    for name, module in modules.items():
        keys = list(module.state_dict().keys())
        config = specs[name][1]
        if name == "controlnet":
            tables[name] = controlnet_key_map(keys, config, control_prefix)
        elif name == "unet":
            tables[name] = unet_key_map(keys, config)
        elif name == "vae":
            tables[name] = vae_key_map(keys, config)
        elif name == "text_encoder" and family == "sd1":
            tables[name] = clip_key_map(keys, SD1_TEXT_PREFIX)
        elif name == "text_encoder" and family == "sd2":
            tables[name] = open_clip_key_map(keys, SD2_TEXT_PREFIX)
        elif name == "text_encoder" and family == "sdxl":
            tables[name] = clip_key_map(keys, SDXL_TEXT_PREFIX)
        elif name == "text_encoder_2" and family == "sdxl":
            tables[name] = open_clip_key_map(keys, SDXL_TEXT2_PREFIX)
        else:
            raise WeightsError(f"no original-layout key map for {name} of family {family}")
    return tables


def build_components(architecture: dict[str, Any], where: str) -> dict[str, nn.Module]:
    """Every component of an architecture JSON, empty (parameters on the meta device)."""
    return {
        name: build_empty(class_name, config, where=where)
        for name, (class_name, config) in component_specs(architecture).items()
    }


def load_single_file(
    path: Path,
    *,
    expected_family: str | None,
    architecture: dict[str, Any] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> SingleFileModel:
    """Detect the family of an original-layout checkpoint and load it into diffusers classes."""
    store = TensorStore([path])
    try:
        family = detect_family(store)
        if expected_family is not None and family != expected_family:
            raise WeightsError(
                f"{path}: the manifest says family {expected_family}, "
                f"but the checkpoint's keys are those of {family}"
            )
        if architecture is None:
            if family not in DEFAULT_CONFIGS:
                raise WeightsError(
                    f"{path}: no built-in architecture for {family}; name one with `config:` "
                    "in the manifest (a pipelines/configs name or a .json in the model folder)"
                )
            architecture = read_architecture(DEFAULT_CONFIGS[family])
        specs = component_specs(architecture)
        modules = build_components(architecture, where=str(path))
        tables = key_maps(family.removeprefix("controlnet-"), modules, specs, _controlnet_prefix(store))
        for name, module in modules.items():
            sources = sources_from_map(tables[name], store)
            if not sources:
                raise CheckpointKeyError(f"{path}: the checkpoint has no {name} tensors")
            populate(module, store, sources, device=device, dtype=dtype, component=name)
    finally:
        store.close()
    scheduler = dict(architecture.get("scheduler", {}))
    return SingleFileModel(family, modules, scheduler, architecture)
