"""A procedural world of captioned scenes: shapes on a 3x3 grid, rendered by signed distances.

A scene holds 1-3 objects, each a (shape, colour, size) placed in one cell of a 3x3 grid with a
small jitter, over a muted background with a linear gradient. Captions come from a small grammar
with paraphrases; they may state a position ("on the left") for one object or a relation
("left of", "above") between two. Six shape-colour pairs (`HELD_OUT_PAIRS`) never appear in the
training split; the held-out split puts at least one of them in every scene, to test composition.

Rendering is vectorised torch over a batch (B, 3 objects, H, W): per-object signed distances,
anti-aliased coverage clamp(0.5 - d, 0, 1), composited in order. It runs on CPU or GPU.
Scenes are deterministic by seed (python `random.Random` for specs, a torch Generator for
jitter and backgrounds).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
SIZES = ("small", "large")
COLOUR_RGB = (
    (0.90, 0.12, 0.12),
    (0.98, 0.55, 0.08),
    (0.96, 0.88, 0.12),
    (0.15, 0.72, 0.20),
    (0.15, 0.28, 0.92),
    (0.58, 0.20, 0.80),
    (0.97, 0.97, 0.97),
    (0.06, 0.06, 0.06),
)
# (shape, colour) index pairs never seen by the generator in training: one per shape.
HELD_OUT_PAIRS = frozenset({(0, 3), (1, 0), (2, 4), (3, 2), (4, 5), (5, 1)})
GRID = 3  # cells per side
MAX_OBJECTS = 3
IMAGE_SIZE = 64
RADIUS_PX = (5.0, 8.0)  # small, large, at 64 px
JITTER_PX = 2.0
POSITIONS = ("left", "right", "top", "bottom", "center")
RELATIONS = ("left_of", "right_of", "above", "below")

_POSITION_PHRASES = {
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
    "center": ("in the center", "in the middle"),
}
_PREFIXES = ("", "", "", "a picture of ", "an image of ", "there is ")
TOKEN_TABLE_PATH = Path(__file__).with_name("token_table.json")
BOS_ID, EOS_ID, PAD_ID, CONTEXT_LENGTH = 49406, 49407, 49407, 77


@dataclass(frozen=True)
class ObjectSpec:
    """One mentioned object; `size` None means the caption leaves the size open."""

    shape: int
    colour: int
    size: int | None


@dataclass(frozen=True)
class Caption:
    """A caption and what it asserts: objects, an optional position (1 object) or relation."""

    text: str
    objects: tuple[ObjectSpec, ...]
    position: str | None = None  # constrains objects[0] (single-object captions)
    relation: str | None = None  # objects[0] <relation> objects[1]


@dataclass(frozen=True)
class Scene:
    """A caption and a layout satisfying it: per object a cell (row * 3 + col) and a size."""

    caption: Caption
    cells: tuple[int, ...]
    sizes: tuple[int, ...]


def _cell_ok_position(cell: int, position: str) -> bool:
    row, col = divmod(cell, GRID)
    return {
        "left": col == 0,
        "right": col == GRID - 1,
        "top": row == 0,
        "bottom": row == GRID - 1,
        "center": row == 1 and col == 1,
    }[position]


def relation_holds(cell_a: int, cell_b: int, relation: str) -> bool:
    """Whether object A in cell_a stands in `relation` to object B in cell_b (grid cells)."""
    ra, ca = divmod(cell_a, GRID)
    rb, cb = divmod(cell_b, GRID)
    return {"left_of": ca < cb, "right_of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


SWAPPED_RELATION = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
_SWAPPED_WORD = {"left": "right", "right": "left", "above": "below", "below": "above", "under": "above"}


def swap_relation(caption: Caption) -> Caption:
    """A relation caption asking for the mirrored relation between the same two objects, phrased
    alike: "left" <-> "right", "above" <-> "below", "under" -> "above" (one word changes)."""
    if caption.relation is None:
        raise ValueError(f"caption states no relation: {caption.text!r}")
    text = " ".join(_SWAPPED_WORD.get(word, word) for word in caption.text.split(" "))
    return replace(caption, text=text, relation=SWAPPED_RELATION[caption.relation])


def mirrored(scene: Scene) -> Scene:
    """A relation scene's mirror image: the swapped caption (swap_relation) and the layout mirrored
    across the axis of its relation (columns for left / right, rows for above / below), which
    satisfies it. Objects, sizes and (at render time) everything else stay."""
    caption = scene.caption
    horizontal = caption.relation in ("left_of", "right_of")
    cells = []
    for cell in scene.cells:
        row, col = divmod(cell, GRID)
        cells.append(row * GRID + (GRID - 1 - col) if horizontal else (GRID - 1 - row) * GRID + col)
    return Scene(swap_relation(caption), tuple(cells), scene.sizes)


SWAPPED_POSITION = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


def swap_position(caption: Caption) -> Caption:
    """A single-object caption with its side word swapped ("left" <-> "right", "top" <-> "bottom")."""
    if caption.position not in SWAPPED_POSITION:
        raise ValueError(f"caption states no side: {caption.text!r}")
    text = " ".join(SWAPPED_POSITION.get(word, word) for word in caption.text.split(" "))
    return replace(caption, text=text, position=SWAPPED_POSITION[caption.position])


def _with_object(caption: Caption, index: int, new: ObjectSpec) -> Caption:
    """The caption with objects[index] replaced and its phrase rewritten in place (article included)."""
    old = caption.objects[index]
    pattern = re.compile(rf"(?<![a-z]){re.escape(_object_phrase(old))}(?![a-z])")
    text, count = pattern.subn(_object_phrase(new), caption.text, count=1)
    if count != 1:
        raise ValueError(f"object phrase {_object_phrase(old)!r} not in {caption.text!r}")
    objects = caption.objects[:index] + (new,) + caption.objects[index + 1:]
    return replace(caption, text=text, objects=objects)


def hard_negative(caption: Caption, rng: random.Random) -> Caption:
    """A caption that the scene drawn for `caption` does not satisfy: one attribute of one object (shape, colour or a
    stated size) or the stated side / relation changed, phrased alike. The kind of change is drawn uniformly from
    those the caption allows; a changed object never forms a held-out (shape, colour) pair nor repeats another
    object's pair, so a negative of a training caption is itself a training-split caption."""
    kinds = ["shape", "colour"]
    if any(o.size is not None for o in caption.objects):
        kinds.append("size")
    if caption.relation is not None or caption.position in SWAPPED_POSITION:
        kinds.append("layout")
    kind = rng.choice(kinds)
    if kind == "layout":
        return swap_relation(caption) if caption.relation is not None else swap_position(caption)
    if kind == "size":
        index = rng.choice([i for i, o in enumerate(caption.objects) if o.size is not None])
        old = caption.objects[index]
        return _with_object(caption, index, replace(old, size=1 - old.size))  # type: ignore[operator]
    taken = {(o.shape, o.colour) for o in caption.objects}
    options = []
    for index, old in enumerate(caption.objects):
        values = range(len(SHAPES)) if kind == "shape" else range(len(COLOURS))
        for value in values:
            new = replace(old, shape=value) if kind == "shape" else replace(old, colour=value)
            pair = (new.shape, new.colour)
            if pair not in taken and pair not in HELD_OUT_PAIRS:
                options.append((index, new))
    index, new = rng.choice(options)
    return _with_object(caption, index, new)


def position_holds(cell: int, position: str) -> bool:
    """Whether an object in `cell` satisfies the caption's position word."""
    return _cell_ok_position(cell, position)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(obj: ObjectSpec) -> str:
    words = ([SIZES[obj.size]] if obj.size is not None else []) + [COLOURS[obj.colour], SHAPES[obj.shape]]
    return f"{_article(words[0])} {' '.join(words)}"


def _relation_text(a: str, b: str, relation: str, rng: random.Random) -> str:
    options = {
        "left_of": (f"{a} left of {b}", f"{a} to the left of {b}", f"{b} to the right of {a}"),
        "right_of": (f"{a} right of {b}", f"{a} to the right of {b}", f"{b} to the left of {a}"),
        "above": (f"{a} above {b}", f"{b} below {a}", f"{b} under {a}"),
        "below": (f"{a} below {b}", f"{a} under {b}", f"{b} above {a}"),
    }[relation]
    return rng.choice(options)


def _sample_objects(rng: random.Random, n: int, split: str) -> list[ObjectSpec]:
    """n objects with distinct (shape, colour); split 'heldout' forces >= 1 held-out pair."""
    while True:
        pairs = [(rng.randrange(len(SHAPES)), rng.randrange(len(COLOURS))) for _ in range(n)]
        if split == "heldout":
            pairs[rng.randrange(n)] = rng.choice(sorted(HELD_OUT_PAIRS))
        if len(set(pairs)) < n:
            continue
        held = [p in HELD_OUT_PAIRS for p in pairs]
        if split == "train" and any(held):
            continue
        if split == "heldout" and not any(held):
            continue
        sizes = [rng.randrange(len(SIZES)) if rng.random() < 0.7 else None for _ in range(n)]
        return [ObjectSpec(s, c, z) for (s, c), z in zip(pairs, sizes)]


def sample_scene(rng: random.Random, split: str = "train") -> Scene:
    """One captioned scene; split is 'train' (no held-out pair), 'heldout' (>= 1) or 'all'."""
    n = rng.choices((1, 2, 3), weights=(0.4, 0.4, 0.2))[0]
    objects = _sample_objects(rng, n, split)
    phrases = [_object_phrase(o) for o in objects]
    position = relation = None
    if n == 1:
        if rng.random() < 0.6:
            position = rng.choice(POSITIONS)
            body = f"{phrases[0]} {rng.choice(_POSITION_PHRASES[position])}"
        else:
            body = phrases[0]
    elif n == 2:
        if rng.random() < 0.7:
            relation = rng.choice(RELATIONS)
            body = _relation_text(phrases[0], phrases[1], relation, rng)
        else:
            body = f"{phrases[0]} {rng.choice(('and', 'with'))} {phrases[1]}"
    else:
        body = f"{phrases[0]}, {phrases[1]} and {phrases[2]}"
    text = rng.choice(_PREFIXES) + body
    caption = Caption(text, tuple(objects), position, relation)
    cells = _sample_cells(rng, caption)
    sizes = tuple(o.size if o.size is not None else rng.randrange(len(SIZES)) for o in objects)
    return Scene(caption, cells, sizes)


def _sample_cells(rng: random.Random, caption: Caption) -> tuple[int, ...]:
    n = len(caption.objects)
    while True:
        cells = tuple(rng.sample(range(GRID * GRID), n))
        if caption.position is not None and not position_holds(cells[0], caption.position):
            continue
        if caption.relation is not None and not relation_holds(cells[0], cells[1], caption.relation):
            continue
        return cells


def sample_layout_scene(rng: random.Random) -> Scene:
    """A scene over all pairs with no caption constraints (judge training: every combination)."""
    n = rng.choice((1, 2, 3))
    objects = _sample_objects(rng, n, "all")
    cells = tuple(rng.sample(range(GRID * GRID), n))
    sizes = tuple(rng.randrange(len(SIZES)) for _ in objects)
    objects = [ObjectSpec(o.shape, o.colour, s) for o, s in zip(objects, sizes)]
    return Scene(Caption("", tuple(objects)), cells, sizes)


def sample_scenes(seed: int, count: int, split: str = "train") -> list[Scene]:
    """`count` captioned scenes, deterministic by seed."""
    rng = random.Random(f"{split}:{seed}")
    return [sample_scene(rng, split) for _ in range(count)]


@dataclass(frozen=True)
class SceneBatch:
    """Scenes as tensors, empty slots marked by shape -1. All (B, MAX_OBJECTS) long."""

    shape: Tensor
    colour: Tensor
    size: Tensor
    cell: Tensor

    def to(self, device: torch.device | str) -> SceneBatch:
        return SceneBatch(*(t.to(device) for t in (self.shape, self.colour, self.size, self.cell)))

    def index(self, rows: Tensor) -> SceneBatch:
        return SceneBatch(*(t[rows] for t in (self.shape, self.colour, self.size, self.cell)))


def scenes_to_batch(scenes: list[Scene]) -> SceneBatch:
    """Pack scenes into (B, 3) tensors (-1 where a slot is empty)."""
    b = len(scenes)
    out = {k: torch.full((b, MAX_OBJECTS), -1, dtype=torch.long) for k in ("shape", "colour", "size", "cell")}
    for i, scene in enumerate(scenes):
        for j, (obj, cell, size) in enumerate(zip(scene.caption.objects, scene.cells, scene.sizes)):
            out["shape"][i, j] = obj.shape
            out["colour"][i, j] = obj.colour
            out["size"][i, j] = size
            out["cell"][i, j] = cell
    return SceneBatch(out["shape"], out["colour"], out["size"], out["cell"])


def _shape_distance(shape: Tensor, px: Tensor, py: Tensor, r: Tensor) -> Tensor:
    """Signed distance (px) of each pixel to each object's shape; all args broadcast to (B, K, H, W)."""
    ax, ay = px.abs(), py.abs()
    length = torch.sqrt(px * px + py * py)
    circle = length - r
    square = torch.maximum(ax, ay) - 0.85 * r
    inradius = 0.55 * r  # equilateral triangle, apex up (image y grows downward)
    triangle = torch.maximum(
        torch.maximum(py, 0.866 * px - 0.5 * py), -0.866 * px - 0.5 * py
    ) - inradius
    diamond = (ax + ay) / math.sqrt(2.0) - 0.8 * r
    arm = 0.33 * r
    cross = torch.minimum(torch.maximum(ax - r, ay - arm), torch.maximum(ax - arm, ay - r))
    ring = (length - 0.72 * r).abs() - 0.3 * r
    stack = torch.stack((circle, square, triangle, diamond, cross, ring), dim=0)  # (6, B, K, H, W)
    index = shape.clamp(min=0).expand_as(circle).unsqueeze(0)
    return stack.gather(0, index).squeeze(0)


def uniform_source(generator: torch.Generator, device: torch.device) -> Callable[..., Tensor]:
    """uniform(*shape): U[0, 1) draws from `generator` (on its own device), moved to `device`."""

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, device=generator.device).to(device)

    return uniform


def background(b: int, size: int, device: torch.device, uniform: Callable[..., Tensor]) -> Tensor:
    """(B, 3, size, size): a muted base colour plus a linear gradient along a random direction;
    the first draws `render` makes."""
    base = 0.35 + 0.3 * uniform(b, 1, 1, 1) + 0.14 * (uniform(b, 3, 1, 1) - 0.5)
    angle = 2 * math.pi * uniform(b, 1, 1, 1)
    amplitude = 0.16 * (uniform(b, 1, 1, 1) - 0.5)
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size - 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)
    return base + amplitude * (torch.cos(angle) * gx + torch.sin(angle) * gy)


def object_distances(batch: SceneBatch, size: int, uniform: Callable[..., Tensor]) -> Tensor:
    """Signed distances (B, K, size, size), in pixels of `size`, of every pixel to each object at
    its cell with jittered centre and radius (the draws `render` makes after the background)."""
    device = batch.shape.device
    b = batch.shape.shape[0]
    scale = size / IMAGE_SIZE
    cell_px = size / GRID
    row = torch.div(batch.cell.clamp(min=0), GRID, rounding_mode="floor")
    col = batch.cell.clamp(min=0) % GRID
    cx = (col.float() + 0.5) * cell_px + JITTER_PX * scale * (2 * uniform(b, MAX_OBJECTS) - 1)
    cy = (row.float() + 0.5) * cell_px + JITTER_PX * scale * (2 * uniform(b, MAX_OBJECTS) - 1)
    radii = torch.tensor(RADIUS_PX, device=device) * scale
    r = radii[batch.size.clamp(min=0)] * (1 + 0.06 * (2 * uniform(b, MAX_OBJECTS) - 1))  # (B, K)
    pix = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    px = pix.view(1, 1, 1, size) - cx.view(b, MAX_OBJECTS, 1, 1)  # (B, K, 1, W)
    py = pix.view(1, 1, size, 1) - cy.view(b, MAX_OBJECTS, 1, 1)  # (B, K, H, 1)
    px, py = px.expand(b, MAX_OBJECTS, size, size), py.expand(b, MAX_OBJECTS, size, size)
    rr = r.view(b, MAX_OBJECTS, 1, 1).expand_as(px)
    return _shape_distance(batch.shape.view(b, MAX_OBJECTS, 1, 1), px, py, rr)


def render(batch: SceneBatch, generator: torch.Generator, size: int = IMAGE_SIZE) -> Tensor:
    """Render scenes to (B, 3, size, size) images in [0, 1]; jitter and background from `generator`."""
    device = batch.shape.device
    b = batch.shape.shape[0]
    scale = size / IMAGE_SIZE
    uniform = uniform_source(generator, device)
    image = background(b, size, device, uniform)
    distance = object_distances(batch, size, uniform)
    coverage = (0.5 * scale - distance).clamp(0, scale) / scale  # anti-aliased, ~1 px ramp
    coverage = coverage * (batch.shape >= 0).float().view(b, MAX_OBJECTS, 1, 1)
    palette = torch.tensor(COLOUR_RGB, device=device)
    rgb = palette[batch.colour.clamp(min=0)] + 0.05 * (2 * uniform(b, MAX_OBJECTS, 3) - 1)  # (B, K, 3)
    for k in range(MAX_OBJECTS):
        alpha = coverage[:, k : k + 1]  # (B, 1, H, W)
        image = image * (1 - alpha) + rgb[:, k].view(b, 3, 1, 1) * alpha
    return image.clamp(0, 1)


def cell_targets(batch: SceneBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Per-cell labels (B, 9): shape (0 = empty, else shape + 1), colour and size (-1 where empty)."""
    b = batch.shape.shape[0]
    device = batch.shape.device
    shape = torch.zeros(b, GRID * GRID, dtype=torch.long, device=device)
    colour = torch.full((b, GRID * GRID), -1, dtype=torch.long, device=device)
    size = torch.full((b, GRID * GRID), -1, dtype=torch.long, device=device)
    present = batch.shape >= 0
    rows = torch.arange(b, device=device).view(b, 1).expand_as(batch.shape)[present]
    cells = batch.cell[present]
    shape[rows, cells] = batch.shape[present] + 1
    colour[rows, cells] = batch.colour[present]
    size[rows, cells] = batch.size[present]
    return shape, colour, size


def pair_presence(batch: SceneBatch) -> Tensor:
    """(B, 48) 0/1 labels: which (shape, colour) pairs the scene contains (classifier heads)."""
    b = batch.shape.shape[0]
    out = torch.zeros(b, len(SHAPES) * len(COLOURS), dtype=torch.long, device=batch.shape.device)
    present = batch.shape >= 0
    rows = torch.arange(b, device=out.device).view(b, 1).expand_as(batch.shape)[present]
    out[rows, batch.shape[present] * len(COLOURS) + batch.colour[present]] = 1
    return out


def caption_presence(caption: Caption) -> list[int]:
    """The 48 pair-presence labels a caption asserts (mentioned pairs 1, all others 0)."""
    labels = [0] * (len(SHAPES) * len(COLOURS))
    for obj in caption.objects:
        labels[obj.shape * len(COLOURS) + obj.colour] = 1
    return labels


def _load_token_table() -> dict[str, list[int]]:
    return json.loads(TOKEN_TABLE_PATH.read_text())


_TOKEN_TABLE: dict[str, list[int]] | None = None


def caption_words(text: str) -> list[str]:
    """Split a caption into the pieces the CLIP BPE pre-tokenizer sees (words and commas)."""
    return text.replace(",", " ,").split()


def tokenize(texts: list[str]) -> Tensor:
    """CLIP BPE ids (B, 77) padded with 49407, from the committed per-word table (grammar words only)."""
    global _TOKEN_TABLE
    if _TOKEN_TABLE is None:
        _TOKEN_TABLE = _load_token_table()
    out = torch.full((len(texts), CONTEXT_LENGTH), PAD_ID, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [BOS_ID] + [t for w in caption_words(text.lower()) for t in _TOKEN_TABLE[w]] + [EOS_ID]
        ids = ids[:CONTEXT_LENGTH]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def grammar_words() -> list[str]:
    """Every word the caption grammar can produce."""
    words = set(SHAPES) | set(COLOURS) | set(SIZES) | {"a", "an", ",", "and", "with"}
    for phrases in _POSITION_PHRASES.values():
        for p in phrases:
            words.update(p.split())
    words.update(["left", "of", "to", "the", "right", "above", "below", "under"])
    for p in _PREFIXES:
        words.update(p.split())
    return sorted(words)


def build_token_table() -> dict[str, list[int]]:
    """Per-word CLIP BPE ids from open_clip's vocabulary (run once; the table is committed)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    return {w: tokenizer.encode(w) for w in grammar_words()}


if __name__ == "__main__":
    TOKEN_TABLE_PATH.write_text(json.dumps(build_token_table(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {TOKEN_TABLE_PATH}")
