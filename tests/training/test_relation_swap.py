"""training.data.swap_relation / mirrored and training.relation_swap: the swapped caption asks for the
mirrored layout, the mirrored scene satisfies it, and the tally counts ignored and obeyed relation words."""

from __future__ import annotations

from training.data import mirrored, relation_holds, sample_scenes, swap_position, swap_relation
from training.judge import DetectedObject
from training.relation_swap import tally


def test_the_swapped_caption_asks_for_the_mirrored_layout() -> None:
    scenes = [s for s in sample_scenes(2026, 400, "train") if s.caption.relation is not None and len(s.caption.objects) == 2]
    assert len(scenes) > 20
    for scene in scenes:
        caption, mirror = scene.caption, swap_relation(scene.caption)
        assert mirror.objects == caption.objects and mirror.text != caption.text
        assert len(mirror.text.split()) == len(caption.text.split())  # phrased alike, one word changed
        a, b = scene.cells[:2]
        assert relation_holds(a, b, caption.relation)  # type: ignore[arg-type]
        assert not relation_holds(a, b, mirror.relation)  # type: ignore[arg-type]
        flipped = mirrored(scene)  # the mirrored layout satisfies the swapped caption
        assert flipped.caption == mirror and flipped.sizes == scene.sizes
        assert relation_holds(flipped.cells[0], flipped.cells[1], mirror.relation)  # type: ignore[arg-type]
        assert len(set(flipped.cells)) == len(flipped.cells)


def test_tally_counts_ignored_and_obeyed_relation_words() -> None:
    caption = next(s.caption for s in sample_scenes(2026, 400, "train") if s.caption.relation == "left_of"
                   and len(s.caption.objects) == 2)
    first, second = caption.objects[:2]

    def image(cell_a: int, cell_b: int) -> list[DetectedObject]:
        return [DetectedObject(cell_a, first.shape, first.colour, 0), DetectedObject(cell_b, second.shape, second.colour, 0)]

    obeyed = (image(3, 5), image(5, 3))  # A left of B, then A right of B: the word sets the layout
    ignored = (image(3, 5), image(3, 5))  # the same layout for both
    missing = ([], image(3, 5))  # an object not found: left out of the rates
    result = tally([obeyed[0], ignored[0], missing[0]], [obeyed[1], ignored[1], missing[1]], [caption] * 3,
                   [swap_relation(caption)] * 3)
    assert result["pairs"] == 2 and result["captions"] == 3
    assert (result["same_layout"], result["holds"], result["holds_swapped"], result["both_hold"]) == (0.5, 1.0, 0.5, 0.5)


def test_the_position_control_swaps_the_side_word() -> None:
    caption = next(s.caption for s in sample_scenes(2026, 400, "train") if s.caption.position == "left")
    mirror = swap_position(caption)
    assert mirror.position == "right" and "right" in mirror.text.split() and "left" not in mirror.text.split()
    obj = caption.objects[0]
    left, right = [DetectedObject(3, obj.shape, obj.colour, 0)], [DetectedObject(5, obj.shape, obj.colour, 0)]
    result = tally([left, left], [right, left], [caption] * 2, [mirror] * 2)
    assert (result["same_layout"], result["holds"], result["holds_swapped"], result["both_hold"]) == (0.5, 1.0, 0.5, 0.5)


def test_the_mirror_pool_pairs_each_relation_scene_with_its_mirror() -> None:
    from training.text_unet import mirror_pool

    scenes = sample_scenes(7, 200, "train")
    pool, partners = mirror_pool(scenes)
    relations = sum(s.caption.relation is not None for s in scenes)
    assert len(pool) == len(partners) == len(scenes) + relations > len(scenes)
    for i, j in enumerate(partners):
        assert partners[j] == i  # an involution: pairs, and single scenes their own partner
        if j == i:
            assert pool[i].caption.relation is None
        elif j == i + 1:
            assert pool[j] == mirrored(pool[i]) and pool[i] in scenes


def test_the_high_t_draw_moves_only_the_asked_share_of_relation_rows() -> None:
    import torch

    from training.text_unet import RELATION_HIGH_T, draw_timesteps

    relation = torch.arange(40_000) % 2 == 0
    gen = torch.Generator().manual_seed(0)
    uniform = draw_timesteps(relation, 0.0, gen)
    t = draw_timesteps(relation, 0.75, gen)
    assert 0 <= int(t.min()) and int(t.max()) <= 999
    high = (t >= RELATION_HIGH_T).float()
    assert abs(float(high[~relation].mean()) - 0.5) < 0.02  # other rows stay uniform
    assert abs(float(high[relation].mean()) - (0.75 + 0.25 * 0.5)) < 0.02  # 3/4 high, the rest uniform
    assert abs(float((uniform >= RELATION_HIGH_T).float().mean()) - 0.5) < 0.02


def test_the_relation_boost_weighs_only_the_chosen_relations() -> None:
    from training.text_unet import draw_weights

    scenes = sample_scenes(5, 300, "train")
    every = draw_weights(scenes, 3.0)
    vertical = draw_weights(scenes, 6.0, ("above", "below"))
    for scene, a, v in zip(scenes, every.tolist(), vertical.tolist()):
        relation = scene.caption.relation
        assert a == (3.0 if relation is not None else 1.0)
        assert v == (6.0 if relation in ("above", "below") else 1.0)
    assert {s.caption.relation for s in scenes} >= {"left_of", "above", None}
