"""Classifier guidance as a served option: the manifest's noisy-latent classifier and the labels
a prompt asks it for.

A pipeline entry of weights_manifest.yaml names a kind-classifier entry (`classifier:`); that
entry says what its heads predict (`labels:`), which fixes both the network that reads its one
.safetensors file and the function that turns a prompt into one label per head. The engine
adds w_c sigma^2 grad_x log p(labels | x, sigma) to x0 on the rows of requests that ask for it
(pipelines.guidance.classifier_guidance, Dhariwal & Nichol 2021, eq. 10-14).

    "shapes_world_pairs": 48 binary heads, one per (shape, colour) pair of the bundled model's
    shapes world (training.classifier); labels from the prompt parsed with the caption grammar
    of training.data: each mentioned pair 1, every other pair 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from pipelines.guidance import NoisyClassifier
from pipelines.manifest import ClassifierLabels, ModelEntry
from pipelines.model import LoadedModel

log = logging.getLogger("darkroom.classifier")

PromptLabels = Callable[[str], tuple[int, ...]]  # prompt -> one label per head; ValueError if none fit

GRAMMAR_EXAMPLE = "a small red circle left of a blue square"


@dataclass(frozen=True)
class ServedClassifier:
    """A loaded noisy-latent classifier with its prompt -> labels function."""

    id: str
    network: NoisyClassifier  # (x (B, C, h, w) VE latent, sigma (B,)) -> logits per head
    heads: int  # labels per row; every prompt_labels() result has this length
    prompt_labels: PromptLabels


@dataclass
class ClassifiedModel(LoadedModel):
    """A served model with the classifier its manifest entry attaches (None: no classifier)."""

    classifier: ServedClassifier | None = None


def classifier_of(model: LoadedModel) -> ServedClassifier | None:
    """The classifier served with `model`, if any."""
    return model.classifier if isinstance(model, ClassifiedModel) else None


def with_classifier(model: LoadedModel, classifier: ServedClassifier) -> ClassifiedModel:
    """`model` with `classifier` attached (the same components, not copies)."""
    return ClassifiedModel(**{f.name: getattr(model, f.name) for f in fields(LoadedModel)}, classifier=classifier)


def shapes_world_labels(prompt: str) -> tuple[int, ...]:
    """The 48 (shape, colour) pair-presence labels a shapes-world caption asserts.

    The caption grammar of training.data: 1-3 objects, each `[small|large] <colour> <shape>`,
    joined by the grammar's words (positions, relations, 'and', 'with', commas, prefixes).
    Raises ValueError saying why the prompt is not such a caption (the prompt is not echoed).
    """
    from training.data import (
        COLOURS,
        MAX_OBJECTS,
        SHAPES,
        SIZES,
        Caption,
        ObjectSpec,
        caption_presence,
        caption_words,
        grammar_words,
    )

    words = caption_words(prompt.strip().lower().rstrip("."))
    vocabulary = set(grammar_words())
    outside = sum(w not in vocabulary for w in words)
    if outside:
        raise ValueError(f"{outside} word(s) of the prompt are outside the shapes-world caption grammar")
    objects: list[ObjectSpec] = []
    for i, word in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else None
        if word in SIZES and after not in COLOURS:
            raise ValueError(f"the size '{word}' must be followed by a colour")
        if word in COLOURS and after not in SHAPES:
            raise ValueError(f"the colour '{word}' must be followed by a shape")
        if word in SHAPES:
            before = words[i - 1] if i > 0 else None
            if before not in COLOURS:
                raise ValueError(f"the shape '{word}' needs a colour before it")
            objects.append(ObjectSpec(SHAPES.index(word), COLOURS.index(before), None))
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"a caption names 1 to {MAX_OBJECTS} coloured shapes, this prompt names {len(objects)}")
    return tuple(caption_presence(Caption(prompt, tuple(objects))))


def _shapes_world_network(path: Path, device: torch.device) -> NoisyClassifier:
    from training.classifier import load_guidance_classifier

    return load_guidance_classifier(path, device)


# labels -> (the network that reads the entry's .safetensors, its head count, prompt -> labels);
# shapes_world_pairs: 48 = len(SHAPES) x len(COLOURS) heads (tests check it against the network)
LABELS: dict[str, tuple[Callable[[Path, torch.device], NoisyClassifier], int, PromptLabels]] = {
    "shapes_world_pairs": (_shapes_world_network, 48, shapes_world_labels),
}


def load_classifier(entry: ModelEntry, weights_root: Path, device: torch.device) -> ServedClassifier:
    """A kind-classifier manifest entry, its files checked (sha256) first, in fp32 on `device`."""
    from pipelines.loading.loader import check_files
    from pipelines.loading.safety import resolve_inside

    if entry.kind != "classifier" or entry.labels is None:
        raise ValueError(f"model {entry.id!r} is a {entry.kind}, not a classifier")
    labels: ClassifierLabels = entry.labels
    build, heads, prompt_labels = LABELS[labels]
    if check_files(entry, weights_root):
        log.warning("classifier %s: files without a sha256 in the manifest are not verified", entry.id)
    network = build(resolve_inside(weights_root, f"{entry.path}/{entry.checkpoint.path}"), device)
    return ServedClassifier(id=entry.id, network=network, heads=heads, prompt_labels=prompt_labels)
