"""The procedural world: determinism, held-out split, captions consistent with layouts, tokens."""

from __future__ import annotations

import random
from collections import Counter

import torch

from training.data import (
    HELD_OUT_PAIRS,
    PAD_ID,
    cell_targets,
    hard_negative,
    pair_presence,
    position_holds,
    relation_holds,
    render,
    sample_layout_scene,
    sample_scenes,
    scenes_to_batch,
    tokenize,
)
from training.judge import DetectedObject, score_caption


def test_same_seed_same_scenes_and_pixels() -> None:
    a, b = sample_scenes(3, 64, "train"), sample_scenes(3, 64, "train")
    assert a == b
    assert a != sample_scenes(4, 64, "train")
    img_a = render(scenes_to_batch(a), torch.Generator().manual_seed(5))
    img_b = render(scenes_to_batch(b), torch.Generator().manual_seed(5))
    assert torch.equal(img_a, img_b)
    assert img_a.shape == (64, 3, 64, 64)
    assert float(img_a.min()) >= 0.0 and float(img_a.max()) <= 1.0


def test_held_out_pairs_never_in_training_split() -> None:
    for scene in sample_scenes(0, 4000, "train"):
        assert not any((o.shape, o.colour) in HELD_OUT_PAIRS for o in scene.caption.objects)
    for scene in sample_scenes(0, 1000, "heldout"):
        assert any((o.shape, o.colour) in HELD_OUT_PAIRS for o in scene.caption.objects)
    # the two splits' caption texts share no caption with a held-out pair
    train_texts = {s.caption.text for s in sample_scenes(1, 4000, "train")}
    held_texts = {s.caption.text for s in sample_scenes(1, 1000, "heldout")}
    assert not train_texts & held_texts


def test_layouts_satisfy_their_captions() -> None:
    for scene in sample_scenes(7, 2000, "train"):
        caption = scene.caption
        assert 1 <= len(caption.objects) <= 3
        assert len(set(scene.cells)) == len(scene.cells)
        for obj, size in zip(caption.objects, scene.sizes):
            assert obj.size is None or obj.size == size
        if caption.position is not None:
            assert position_holds(scene.cells[0], caption.position)
        if caption.relation is not None:
            assert relation_holds(scene.cells[0], scene.cells[1], caption.relation)


def test_world_covers_the_spec() -> None:
    scenes = sample_scenes(11, 3000, "train")
    shapes = {o.shape for s in scenes for o in s.caption.objects}
    colours = {o.colour for s in scenes for o in s.caption.objects}
    counts = {len(s.caption.objects) for s in scenes}
    assert len(shapes) == 6 and len(colours) == 8 and counts == {1, 2, 3}
    assert any(s.caption.relation for s in scenes) and any(s.caption.position for s in scenes)
    # paraphrases: the same relation is written more than one way
    assert any("to the left of" in s.caption.text for s in scenes) and any(" left of" in s.caption.text for s in scenes)


def test_targets_match_the_layout() -> None:
    scenes = [sample_layout_scene(__import__("random").Random(i)) for i in range(32)]
    batch = scenes_to_batch(scenes)
    shape, colour, size = cell_targets(batch)
    presence = pair_presence(batch)
    for i, scene in enumerate(scenes):
        assert int((shape[i] > 0).sum()) == len(scene.cells)
        assert int(presence[i].sum()) == len(scene.cells)
        for obj, cell in zip(scene.caption.objects, scene.cells):
            assert int(shape[i, cell]) == obj.shape + 1 and int(colour[i, cell]) == obj.colour
            assert int(size[i, cell]) == obj.size


def test_token_table_matches_open_clip() -> None:
    import open_clip

    texts = [s.caption.text for s in sample_scenes(2, 300, "train") + sample_scenes(2, 100, "heldout")] + [""]
    reference = open_clip.tokenize(texts)  # pads with 0
    reference[reference == 0] = PAD_ID
    assert torch.equal(tokenize(texts), reference)


def test_a_hard_negative_changes_one_thing_a_scene_of_its_caption_then_fails() -> None:
    """training.data.hard_negative (distill_dmd's mismatched captions): the scene drawn for a caption satisfies it
    and not its negative, the negative differs in exactly one object attribute or the layout word, stays a training
    caption (no held-out pair, no repeated pair) and tokenizes with the grammar's table."""
    rng = random.Random(5)
    kinds: Counter[str] = Counter()
    scenes = sample_scenes(11, 1500, "train")
    for scene in scenes:
        caption = scene.caption
        negative = hard_negative(caption, rng)
        truth = [DetectedObject(cell, o.shape, o.colour, size) for o, cell, size in zip(caption.objects, scene.cells, scene.sizes)]
        assert score_caption(truth, caption)["caption"]
        assert not score_caption(truth, negative)["caption"], (caption.text, negative.text)
        assert negative.text != caption.text
        assert len(negative.text.split()) == len(caption.text.split())  # phrased alike: one word (and its article)
        pairs = [(o.shape, o.colour) for o in negative.objects]
        assert len(set(pairs)) == len(pairs) and not set(pairs) & HELD_OUT_PAIRS
        changed = [(a, b) for a, b in zip(caption.objects, negative.objects) if a != b]
        if changed:
            assert len(changed) == 1 and (negative.position, negative.relation) == (caption.position, caption.relation)
            (a, b), = changed
            diffs = [k for k in ("shape", "colour", "size") if getattr(a, k) != getattr(b, k)]
            assert len(diffs) == 1
            kinds[diffs[0]] += 1
        else:
            assert (negative.position, negative.relation) != (caption.position, caption.relation)
            kinds["layout"] += 1
    assert tokenize([hard_negative(s.caption, rng).text for s in scenes]).shape == (len(scenes), 77)
    assert min(kinds.values()) > 150, kinds  # every kind of change is drawn
