"""The weights manifest: every model Darkroom can serve, its files, hashes, defaults and limits.

`weights_manifest.yaml` at the repository root is parsed into `Manifest` (pydantic v2). Paths are
relative: a model's `path` is a folder under the weights root, each file's `path` is relative to
that folder. A `sha256` of null means "not yet known": `darkroom weights pull` or
`darkroom weights verify --update` fills it in; the loader never trusts such a file silently
(it says so in the log).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST_PATH = REPO_ROOT / "weights_manifest.yaml"
WEIGHTS_ROOT_ENV = "DARKROOM_WEIGHTS_ROOT"

Family = Literal["sd1", "sd2", "sdxl", "dit", "pixart", "bundled"]
Format = Literal["diffusers", "single_file"]
Kind = Literal["pipeline", "controlnet", "classifier", "tiny_vae"]
# What a classifier entry's heads predict, i.e. how a prompt becomes its labels:
# "shapes_world_pairs" - 48 binary heads, one per (shape, colour) pair of the bundled model's
# shapes world (training.data), labelled from the prompt parsed with that world's caption grammar.
ClassifierLabels = Literal["shapes_world_pairs"]
DType = Literal["float32", "float16", "bfloat16"]
PredictionType = Literal["epsilon", "v_prediction", "sample", "flow"]

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")


class ManifestError(ValueError):
    """The manifest file is unreadable or invalid; the message names the file and the field."""


def _check_relative(value: str, what: str) -> str:
    """A manifest path must be relative, POSIX-style, and must not climb out with `..`."""
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty")
    if "\\" in value:
        raise ValueError(f"{what} {value!r} must use '/' separators")
    pure = PurePosixPath(value)
    if pure.is_absolute() or value.startswith("~"):
        raise ValueError(f"{what} {value!r} must be relative to the weights root, not absolute")
    if ".." in pure.parts:
        raise ValueError(f"{what} {value!r} must not contain '..'")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightFile(_Strict):
    """One file of a model, relative to the model's folder."""

    path: str
    # sha256 hex digest; None = not yet known, filled by `darkroom weights pull/verify --update`.
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)  # bytes, when known (progress bars, sanity)
    source: str | None = None  # https://... or hf://<org>/<repo>/<path-in-repo>

    @field_validator("path")
    @classmethod
    def _path_relative(cls, value: str) -> str:
        return _check_relative(value, "path")

    @field_validator("sha256")
    @classmethod
    def _sha256_hex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"sha256 must be 64 hex digits or null, got {value!r}")
        return value

    @field_validator("source")
    @classmethod
    def _source_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith(("https://", "http://")):  # http only for local mirrors
            return value
        if value.startswith("hf://") and value.count("/") >= 4:  # hf://org/repo/file
            return value
        raise ValueError(f"source must be https://... or hf://<org>/<repo>/<file>, got {value!r}")


class Defaults(_Strict):
    """What a request gets when it does not say."""

    sampler: str = "ddim"
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=7.5, ge=0.0)
    width: int = Field(default=512, ge=8)
    height: int = Field(default=512, ge=8)


class Limits(_Strict):
    """What a request may ask for."""

    min_side: int = Field(default=64, ge=8)  # pixels
    max_side: int = Field(default=1024, ge=8)  # pixels
    max_pixels: int = Field(default=1024 * 1024, ge=64)  # width * height
    max_steps: int = Field(default=150, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is larger than max_side {self.max_side}")
        return self


class ModelEntry(_Strict):
    """One servable model (kind pipeline), adapter (kind controlnet), noisy-latent classifier
    for classifier guidance (kind classifier: one .safetensors file, format single_file) or tiny
    decoder for fast mode (kind tiny_vae: an AutoencoderTiny folder on the model's scaled latents)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    family: Family
    kind: Kind = "pipeline"
    format: Format
    path: str  # the model's folder, relative to the weights root
    files: list[WeightFile] = Field(default_factory=list)
    # Architecture for single-file checkpoints: a built-in name from pipelines/configs
    # (e.g. "sd15") or a .json path relative to the model folder. None = the family's default.
    config: str | None = None
    variant: str | None = None  # diffusers folders: "fp16" picks *.fp16.safetensors files
    dtype: DType = "float16"
    # None: the model's own scheduler config (diffusers folders) or architecture config says
    prediction_type: PredictionType | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    limits: Limits = Field(default_factory=Limits)
    controlnets: list[str] = Field(default_factory=list)  # ids of kind-controlnet entries
    # pipeline entries: id of the kind-classifier entry served for classifier guidance
    classifier: str | None = None
    # pipeline entries: id of the kind-tiny_vae entry served for requests with "decoder": "tiny"
    tiny_vae: str | None = None
    labels: ClassifierLabels | None = None  # classifier entries: what their heads predict
    description: str = ""

    @field_validator("path")
    @classmethod
    def _path_relative(cls, value: str) -> str:
        return _check_relative(value, "path")

    @field_validator("config")
    @classmethod
    def _config_relative(cls, value: str | None) -> str | None:
        return None if value is None else _check_relative(value, "config")

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        seen: set[str] = set()
        for f in self.files:
            if f.path in seen:
                raise ValueError(f"files: {f.path!r} is listed twice")
            seen.add(f.path)
        if self.format == "single_file":
            checkpoints = [f.path for f in self.files if f.path.endswith(".safetensors")]
            if len(checkpoints) != 1:
                raise ValueError(
                    f"format single_file needs exactly one .safetensors file in files, "
                    f"found {len(checkpoints)}: {checkpoints}"
                )
        if self.kind == "controlnet" and self.controlnets:
            raise ValueError("controlnets: a controlnet entry cannot itself attach controlnets")
        if self.kind != "pipeline" and self.classifier is not None:
            raise ValueError(f"classifier: only a pipeline entry attaches a classifier, this is a {self.kind}")
        if self.kind != "pipeline" and self.tiny_vae is not None:
            raise ValueError(f"tiny_vae: only a pipeline entry attaches a tiny decoder, this is a {self.kind}")
        if self.kind == "tiny_vae" and (self.format != "diffusers" or self.controlnets):
            raise ValueError("format: a tiny_vae entry is one diffusers component folder (format diffusers, no controlnets)")
        if self.kind == "classifier":
            if self.labels is None:
                raise ValueError("labels: a classifier entry must say what its heads predict (shapes_world_pairs)")
            if self.format != "single_file":
                raise ValueError("format: a classifier entry is one .safetensors file (format single_file)")
            if self.controlnets:
                raise ValueError("controlnets: a classifier entry cannot attach controlnets")
        elif self.labels is not None:
            raise ValueError(f"labels: only classifier entries have labels, this is a {self.kind}")
        d, lim = self.defaults, self.limits
        for side_name, side in (("width", d.width), ("height", d.height)):
            if not lim.min_side <= side <= lim.max_side:
                raise ValueError(
                    f"defaults.{side_name} {side} is outside limits "
                    f"[{lim.min_side}, {lim.max_side}]"
                )
        if d.width * d.height > lim.max_pixels:
            raise ValueError(
                f"defaults.width x defaults.height = {d.width * d.height} exceeds "
                f"limits.max_pixels {lim.max_pixels}"
            )
        if d.steps > lim.max_steps:
            raise ValueError(f"defaults.steps {d.steps} exceeds limits.max_steps {lim.max_steps}")
        return self

    @property
    def checkpoint(self) -> WeightFile:
        """The single .safetensors file of a single_file entry."""
        for f in self.files:
            if f.path.endswith(".safetensors"):
                return f
        raise ManifestError(f"model {self.id!r} lists no .safetensors file")

    def file(self, path: str) -> WeightFile | None:
        """The listed file with this path (relative to the model folder), if any."""
        return next((f for f in self.files if f.path == path), None)


class Manifest(_Strict):
    """The whole manifest: its models and which one the server loads by default."""

    default_model: str
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _references(self) -> Manifest:
        by_id: dict[str, ModelEntry] = {}
        for entry in self.models:
            if entry.id in by_id:
                raise ValueError(f"models: id {entry.id!r} appears twice")
            by_id[entry.id] = entry
        default = by_id.get(self.default_model)
        if default is None:
            raise ValueError(f"default_model {self.default_model!r} is not a model id")
        if default.kind != "pipeline":
            raise ValueError(f"default_model {self.default_model!r} is a {default.kind}")
        for entry in self.models:
            for cid in entry.controlnets:
                control = by_id.get(cid)
                if control is None or control.kind != "controlnet":
                    raise ValueError(
                        f"models[{entry.id}].controlnets: {cid!r} is not a controlnet entry"
                    )
                if control.family != entry.family:
                    raise ValueError(
                        f"models[{entry.id}].controlnets: {cid!r} is for family "
                        f"{control.family}, the model is {entry.family}"
                    )
            if entry.classifier is not None:
                classifier = by_id.get(entry.classifier)
                if classifier is None or classifier.kind != "classifier":
                    raise ValueError(
                        f"models[{entry.id}].classifier: {entry.classifier!r} is not a classifier entry"
                    )
                if classifier.family != entry.family:
                    raise ValueError(
                        f"models[{entry.id}].classifier: {entry.classifier!r} is for family "
                        f"{classifier.family}, the model is {entry.family}"
                    )
            if entry.tiny_vae is not None:
                tiny = by_id.get(entry.tiny_vae)
                if tiny is None or tiny.kind != "tiny_vae":
                    raise ValueError(f"models[{entry.id}].tiny_vae: {entry.tiny_vae!r} is not a tiny_vae entry")
                if tiny.family != entry.family:
                    raise ValueError(
                        f"models[{entry.id}].tiny_vae: {entry.tiny_vae!r} is for family {tiny.family}, "
                        f"the model is {entry.family}"
                    )
        return self

    def get(self, model_id: str | None = None) -> ModelEntry:
        """The entry with this id (the default model when None); KeyError names known ids."""
        wanted = self.default_model if model_id is None else model_id
        for entry in self.models:
            if entry.id == wanted:
                return entry
        known = ", ".join(e.id for e in self.models)
        raise KeyError(f"unknown model {wanted!r}; the manifest has: {known}")

    def pipelines(self) -> list[ModelEntry]:
        """Entries a request can name as its model (not adapters, classifiers or tiny decoders)."""
        return [e for e in self.models if e.kind == "pipeline"]


def _format_validation_error(path: Path, error: ValidationError, data: object) -> str:
    """One line per problem: `file: models[<id>].files[2].sha256: <message>`."""
    lines = []
    for problem in error.errors():
        location: list[str] = []
        node = data
        for part in problem["loc"]:
            if isinstance(part, int):
                label = str(part)
                if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                    item = node[part]
                    label = str(item.get("id", item.get("path", part)))
                location.append(f"[{label}]")
                node = node[part] if isinstance(node, list) and part < len(node) else None
            else:
                location.append(("." if location else "") + str(part))
                node = node.get(part) if isinstance(node, dict) else None
        where = "".join(location) or "(top level)"
        lines.append(f"{path}: {where}: {problem['msg']}")
    return "invalid weights manifest:\n  " + "\n  ".join(lines)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a manifest YAML; errors name the file and the offending field."""
    manifest_path = Path(path) if path is not None else DEFAULT_MANIFEST_PATH
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read weights manifest {manifest_path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{manifest_path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{manifest_path}: expected a mapping with default_model and models")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_format_validation_error(manifest_path, exc, data)) from exc


def default_weights_root() -> Path:
    """$DARKROOM_WEIGHTS_ROOT, else ./weights (relative to the working directory)."""
    return Path(os.environ.get(WEIGHTS_ROOT_ENV) or "weights")
