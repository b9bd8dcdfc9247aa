"""Manifest entry -> checked files -> torch modules -> `LoadedModel` (via pipelines.models.assemble)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.loading.diffusers_folder import load_component, load_diffusers_folder
from pipelines.loading.errors import MissingWeightsError, WeightsError
from pipelines.loading.safety import HashCache, refuse_pickle, resolve_inside, verify_sha256
from pipelines.loading.single_file import load_single_file, read_architecture
from pipelines.manifest import Manifest, ModelEntry, default_weights_root, load_manifest
from pipelines.model import FamilySpec, LoadedModel

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Tokenizer classes a diffusers folder may name that are read from its own files (PixArt's T5).
_FOLDER_TOKENIZERS = ("T5Tokenizer", "T5TokenizerFast")


@dataclass
class LoadedComponents:
    """What a manifest entry's files hold, before wrapping into a LoadedModel."""

    components: dict[str, Any]  # torch modules by diffusers folder name (+ "tokenizer" for T5)
    scheduler_config: dict[str, Any]
    files: list[str] = field(default_factory=list)  # read, relative to the weights root
    text_directions: int = 1  # model_index.json darkroom_text_directions (diffusers folders)


def resolve_dtype(entry: ModelEntry, device: torch.device, dtype: torch.dtype | str | None) -> torch.dtype:
    """The requested dtype, else the manifest's; float32 on CPU unless asked (fp16 CPU kernels are slow)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        return DTYPES[dtype]
    if device.type == "cpu":
        return torch.float32
    return DTYPES[entry.dtype]


def check_files(entry: ModelEntry, root: Path, cache: HashCache | None = None) -> list[str]:
    """Every listed file present, inside the root, not a pickle, and matching its sha256.

    Returns the relative paths whose sha256 is still unknown (null in the manifest).
    """
    folder = resolve_inside(root, entry.path)
    if not folder.exists():
        raise MissingWeightsError(
            f"model {entry.id!r}: folder {entry.path!r} not found under weights root {root} "
            f"(download it with `darkroom weights pull {entry.id}`)"
        )
    cache = cache or HashCache(root)
    unknown = []
    for listed in entry.files:
        relative = f"{entry.path}/{listed.path}"
        refuse_pickle(relative)
        path = resolve_inside(root, relative)
        if not path.is_file():
            raise MissingWeightsError(
                f"{relative}: file of model {entry.id!r} not found under {root} "
                f"(download it with `darkroom weights pull {entry.id}`)"
            )
        if listed.sha256 is None:
            unknown.append(relative)
        else:
            verify_sha256(cache, relative, listed.sha256)
    return unknown


def _architecture(entry: ModelEntry, root: Path) -> dict[str, Any] | None:
    if entry.config is None:
        return None
    if entry.config.endswith(".json"):
        return read_architecture(resolve_inside(root, f"{entry.path}/{entry.config}"))
    return read_architecture(entry.config)


def load_components(
    entry: ModelEntry, weights_root: str | os.PathLike[str], device: torch.device, dtype: torch.dtype
) -> LoadedComponents:
    """Check an entry's files and load its torch modules onto device/dtype."""
    root = Path(weights_root)
    unknown = check_files(entry, root)
    if unknown:
        log.warning(
            "model %s: %d file(s) have no sha256 in the manifest and are not verified "
            "(record them with `darkroom weights verify %s --update`)",
            entry.id, len(unknown), entry.id,
        )
    directions = 1
    if entry.format == "single_file":
        relative = f"{entry.path}/{entry.checkpoint.path}"
        family = entry.family if entry.kind == "pipeline" else f"controlnet-{entry.family}"
        loaded = load_single_file(
            resolve_inside(root, relative),
            expected_family=family,
            architecture=_architecture(entry, root),
            device=device,
            dtype=dtype,
        )
        scheduler = dict(loaded.scheduler_config)
        components: dict[str, Any] = dict(loaded.components)
        files = [relative]
    elif entry.kind in ("controlnet", "tiny_vae"):  # one component folder
        module, files = load_component(root, entry.path, variant=entry.variant, device=device, dtype=dtype)
        components, scheduler = {entry.kind: module}, {}
    else:
        folder = load_diffusers_folder(root, entry.path, variant=entry.variant, device=device, dtype=dtype)
        components, scheduler, files = dict(folder.components), dict(folder.scheduler_config), folder.files_read
        directions = folder.text_directions
        tokenizer = _folder_tokenizer(root, entry.path)
        if tokenizer is not None:
            components["tokenizer"] = tokenizer
    listed = {f"{entry.path}/{f.path}" for f in entry.files}
    unlisted = [f for f in files if f not in listed]
    if entry.files and unlisted:
        log.warning("model %s: read files not listed in the manifest (unverified): %s", entry.id, unlisted)
    if entry.prediction_type is not None:
        scheduler["prediction_type"] = entry.prediction_type
    return LoadedComponents(components, scheduler, files, text_directions=directions)


def _folder_tokenizer(root: Path, folder: str) -> object | None:
    """A T5 tokenizer from the folder's tokenizer/ files (PixArt); CLIP tokenizers are built in."""
    import json

    index_path = resolve_inside(root, f"{folder}/model_index.json")
    spec = json.loads(index_path.read_text(encoding="utf-8")).get("tokenizer")
    if not (isinstance(spec, list) and len(spec) == 2 and spec[1] in _FOLDER_TOKENIZERS):
        return None
    import transformers

    cls = getattr(transformers, spec[1])
    try:
        return cls.from_pretrained(str(resolve_inside(root, f"{folder}/tokenizer")), local_files_only=True)
    except (ImportError, ValueError, OSError) as exc:
        raise WeightsError(
            f"{folder}/tokenizer: cannot build the {spec[1]} from its files ({exc}); "
            "the T5 sentencepiece model needs `pip install sentencepiece protobuf`"
        ) from exc


def load_model(
    entry: ModelEntry,
    weights_root: str | os.PathLike[str],
    device: torch.device | str,
    dtype: torch.dtype | str | None,
    *,
    manifest: Manifest | None = None,
) -> LoadedModel:
    """Load one pipeline entry (and its attached ControlNets and tiny decoder) into a LoadedModel."""
    from pipelines.models import assemble

    if entry.kind != "pipeline":
        raise ValueError(f"model {entry.id!r} is a {entry.kind}, attach it to a pipeline entry")
    device = torch.device(device)
    resolved = resolve_dtype(entry, device, dtype)
    loaded = load_components(entry, weights_root, device, resolved)
    controlnets: dict[str, nn.Module] = {}
    for control_id in entry.controlnets:
        if manifest is None:
            raise ValueError(f"model {entry.id!r} attaches controlnets: pass the manifest")
        control_entry = manifest.get(control_id)
        try:
            control = load_components(control_entry, weights_root, device, resolved)
        except MissingWeightsError as exc:  # the base model still serves; say what is absent
            log.warning("model %s: controlnet %s not loaded: %s", entry.id, control_id, exc)
            continue
        controlnets[control_id] = control.components["controlnet"]
    model = assemble(
        family_spec(entry),
        loaded.components,
        loaded.scheduler_config,
        model_id=entry.id,
        device=device,
        dtype=resolved,
        controlnets=controlnets or None,
        description=entry.description,
        text_directions=loaded.text_directions,
    )
    if entry.tiny_vae is not None:
        if manifest is None:
            raise ValueError(f"model {entry.id!r} attaches a tiny decoder: pass the manifest")
        try:
            tiny = load_components(manifest.get(entry.tiny_vae), weights_root, device, resolved)
        except MissingWeightsError as exc:  # the model still serves with its own decoder; say what is absent
            log.warning("model %s: tiny decoder %s not loaded: %s", entry.id, entry.tiny_vae, exc)
        else:
            from pipelines.vae import TinyAutoencoder

            decoder = TinyAutoencoder(tiny.components["tiny_vae"])
            if (decoder.latent_channels, decoder.latent_factor) != (model.family.latent_channels, model.family.latent_factor):
                raise WeightsError(
                    f"{entry.tiny_vae}: a tiny decoder of {decoder.latent_channels} latent channels at {decoder.latent_factor}x "
                    f"cannot decode model {entry.id!r} ({model.family.latent_channels} at {model.family.latent_factor}x)"
                )
            model.tiny_vae = decoder
    return model


def family_spec(entry: ModelEntry) -> FamilySpec:
    """The family's constants with the manifest's defaults and limits in place of the generic ones."""
    from pipelines.models import FAMILIES

    d, lim = entry.defaults, entry.limits
    return replace(
        FAMILIES[entry.family],
        prediction_type=entry.prediction_type or FAMILIES[entry.family].prediction_type,
        default_sampler=d.sampler,
        default_steps=d.steps,
        default_guidance=d.guidance,
        default_width=d.width,
        default_height=d.height,
        min_side=lim.min_side,
        max_side=lim.max_side,
        max_pixels=lim.max_pixels,
    )


def load_from_manifest(
    model_id: str | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
    weights_root: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
) -> LoadedModel:
    """Load a model by id (default: the manifest's default_model) from the weights root."""
    manifest = load_manifest(manifest_path)
    entry = manifest.get(model_id)
    root = Path(weights_root) if weights_root is not None else default_weights_root()
    return load_model(entry, root, device, dtype, manifest=manifest)
