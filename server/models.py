"""Which model `darkroom serve` loads: the manifest's, or a clearly labelled tiny random model.

When no model is named and the manifest's default model has no weights on disk yet (the bundled
model before it ships), the server still starts, on `pipelines.tiny.tiny_sd1()`, and says loudly
that its images are noise. A model named explicitly must load or the server refuses to start.
A model whose manifest entry attaches a classifier is served with it (classifier guidance,
server.classifier); when the classifier's files are missing or fail their check, the model is
served without it and the log says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.model import LoadedModel
from server.settings import Settings

log = logging.getLogger("darkroom.models")

TINY_ID = "tiny-sd1"
TINY_NOTICE = (
    "*** Serving '{id}': a TINY RANDOM MODEL (untrained; its images are noise). ***\n"
    "*** {reason} ***"
)


def _weights_present(root: Path, entry: object) -> bool:
    """Every listed file exists; a diffusers folder that lists none needs its model_index.json."""
    files = getattr(entry, "files", [])
    folder = root / str(getattr(entry, "path", ""))
    if not files:
        return getattr(entry, "format", None) == "diffusers" and (folder / "model_index.json").is_file()
    return all((folder / f.path).is_file() for f in files)


def _tiny(reason: str) -> tuple[LoadedModel, str]:
    from pipelines.tiny import tiny_sd1

    model = tiny_sd1()
    return model, TINY_NOTICE.format(id=model.id, reason=reason)


def load_served_model(settings: Settings) -> tuple[LoadedModel, str | None]:
    """(the model to serve, a notice to print when it is the tiny random stand-in)."""
    import torch  # noqa: F401  (loaded here, never at import time of the HTTP side)

    from pipelines.manifest import ManifestError, load_manifest
    from server.engine import pick_device, pick_dtype

    if settings.model == TINY_ID:
        return _tiny("asked for by name")
    device = pick_device(settings.device)
    # "auto": fp32 on CPU, the manifest's dtype on a GPU
    dtype = pick_dtype(settings.dtype, device) if settings.dtype != "auto" or device.type == "cpu" else None
    manifest_path = Path(settings.manifest)
    root = Path(settings.weights_root)
    if settings.model is None:
        try:
            manifest = load_manifest(manifest_path)
        except ManifestError as e:
            if not manifest_path.exists():
                return _tiny(f"no manifest at {manifest_path}")
            raise SystemExit(str(e)) from None
        entry = manifest.get(None)
        if not _weights_present(root, entry):
            return _tiny(f"the default model '{entry.id}' has no weights under {root / entry.path} yet")
    from pipelines.loading import load_from_manifest

    try:
        model = load_from_manifest(
            settings.model, manifest_path=manifest_path, weights_root=root, device=device, dtype=dtype
        )
    except Exception as e:
        if settings.model is not None:
            raise  # a model named explicitly must load
        # the implicit default is still being built (weights half-written): keep `make serve` working
        return _tiny(f"the default model could not be loaded ({type(e).__name__}: {e})")
    return _attach_classifier(model, manifest_path, root), None


def _attach_classifier(model: LoadedModel, manifest_path: Path, root: Path) -> LoadedModel:
    """`model` with the classifier its manifest entry names (fp32, on the model's device), if any."""
    from pipelines.loading.errors import WeightsError
    from pipelines.manifest import load_manifest
    from server.classifier import load_classifier, with_classifier

    manifest = load_manifest(manifest_path)
    classifier_id = manifest.get(model.id).classifier
    if classifier_id is None:
        return model
    try:
        classifier = load_classifier(manifest.get(classifier_id), root, model.device)
    except (WeightsError, OSError) as e:  # the model still serves, without classifier guidance
        log.warning("model %s: classifier %s not loaded (%s: %s)", model.id, classifier_id, type(e).__name__, e)
        return model
    return with_classifier(model, classifier)


def load_served_models(settings: Settings) -> tuple[list[LoadedModel], str | None]:
    """Every model of a comma-separated `settings.model` ("bundled,bundled-lcm"), the first the default."""
    ids = [m.strip() for m in (settings.model or "").split(",") if m.strip()]
    notice = None
    if len(ids) <= 1:
        model, notice = load_served_model(settings)
        models = [model]
    else:
        models = [load_served_model(settings.model_copy(update={"model": model_id}))[0] for model_id in ids]
    from pipelines.accel import (
        enable_batch_invariance,
        enable_compile,
        enable_cpu_bf16_decoder,
        enable_cuda_graphs,
        enable_cudnn_benchmark,
        enable_fp8_unet,
        enable_text_encoder_graphs,
        enable_vae_decoder_accel,
    )

    enable_cudnn_benchmark(settings.cudnn_benchmark)
    for model in models:  # each a no-op off CUDA or without a UNet; fp8, then compile, graphs around it
        if settings.batch_invariant:  # fixed pass shapes (before the CUDA levers: graphs then capture the one shape)
            enable_batch_invariance(model, rows=2 * settings.max_batch, decode_rows=settings.max_batch)
        enable_fp8_unet(model, settings.unet_fp8)
        if settings.compile_unet:
            enable_compile(model)
        if settings.cuda_graphs:
            enable_cuda_graphs(model)
        if settings.text_encoder_graphs:
            enable_text_encoder_graphs(model)
        enable_vae_decoder_accel(model, settings.vae_accel, compiled_unet=settings.compile_unet,
                                 channels_last=settings.vae_channels_last)
        if enable_cpu_bf16_decoder(model, settings.vae_cpu_bf16):  # the CPU's decoder lever (CUDA: vae_accel)
            log.info("model %s: VAE decoder in bfloat16 on the CPU (vae_cpu_bf16=%s)", model.id, settings.vae_cpu_bf16)
    return models, notice
