"""The procedural world: determinism, held-out split, captions consistent with layouts, tokens."""

from __future__ import annotations

import torch

from training.data import (
    HELD_OUT_PAIRS,
    PAD_ID,
    cell_targets,
    pair_presence,
    position_holds,
    relation_holds,
    render,
    sample_layout_scene,
    sample_scenes,
    scenes_to_batch,
    tokenize,
)


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
