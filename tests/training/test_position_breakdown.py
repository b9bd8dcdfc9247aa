"""training/position_breakdown.py's labels follow the caption grammar."""

from __future__ import annotations

from training.data import relation_holds, sample_scenes
from training.position_breakdown import phrasing


def test_phrasing_and_the_probe_label_agree_with_the_text_and_the_layout() -> None:
    seen = {"direct": 0, "reversed": 0}
    for scene in sample_scenes(7, 600, "train"):
        caption = scene.caption
        if caption.relation not in ("left_of", "right_of"):
            continue
        form = phrasing(caption)
        seen[form] += 1
        first_left = (caption.relation == "left_of") != (form == "reversed")  # the probe's label
        # "X left of Y" / "X to the left of Y": the first-mentioned object is on the left
        assert first_left == (" left of " in caption.text), caption.text
        # and the rendered layout agrees: the relation holds between the caption's objects' cells
        assert relation_holds(scene.cells[0], scene.cells[1], caption.relation), caption.text
    assert seen["direct"] > 10 and seen["reversed"] > 10
