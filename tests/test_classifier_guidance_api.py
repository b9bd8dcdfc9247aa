"""Classifier guidance through /generate on the known-output model with an analytic classifier:
422s name `classifier_scale` before any model work, guided and unguided requests share forward
passes, and every image equals the same request alone, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from server.classifier import ServedClassifier, shapes_world_labels, with_classifier
from tests.server.conftest import Served, gated_burst, serve
from tests.server.known_model import known_model

pytestmark = pytest.mark.anyio

HEADS = 48


class MeanHeads:
    """48 heads with logits (0, a_k mean(x)) per row: log p(y | x) is smooth and each row's own."""

    def __init__(self) -> None:
        self.rows: list[int] = []  # rows per call: only the rows that ask for classifier guidance

    def __call__(self, x: Tensor, sigma: Tensor) -> list[Tensor]:
        self.rows.append(int(x.shape[0]))
        m = x.mean(dim=(1, 2, 3))  # (B,)
        slopes = torch.linspace(-1.0, 1.0, HEADS)
        return [torch.stack([torch.zeros_like(m), slopes[k] * m], dim=1) for k in range(HEADS)]


def _classified() -> tuple[Any, MeanHeads]:
    heads = MeanHeads()
    served = ServedClassifier(id="known-classifier", network=heads, heads=HEADS, prompt_labels=shapes_world_labels)
    return with_classifier(known_model(), served), heads


async def _generate(s: Served, body: dict[str, Any]) -> dict[str, Any]:
    response = await s.client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def _refused(s: Served, body: dict[str, Any]) -> dict[str, Any]:
    response = await s.client.post("/generate", json=body)
    assert response.status_code == 422, response.text
    return response.json()["error"]


async def test_a_model_without_a_classifier_refuses_classifier_scale() -> None:
    async with serve() as s:
        error = await _refused(s, {"prompt": "a red circle", "classifier_scale": 2.0})
        assert error["field"] == "classifier_scale" and "no classifier" in error["message"]
        assert s.denoiser.calls == []
        plain = await _generate(s, {"prompt": "a red circle", "classifier_scale": 0.0, "seed": 1})
        assert plain["metadata"]["seed"] == 1


@pytest.mark.parametrize(
    ("prompt", "words"),
    [("a photo of a dog", "outside the shapes-world caption grammar"), ("a circle", "needs a colour")],
)
async def test_a_prompt_the_classifier_cannot_label_is_refused(prompt: str, words: str) -> None:
    model, heads = _classified()
    async with serve(model) as s:
        error = await _refused(s, {"prompt": prompt, "classifier_scale": 2.0})
        assert error["field"] == "classifier_scale" and words in error["message"]
        assert "dog" not in error["message"]  # the prompt is not echoed
        assert s.denoiser.calls == [] and heads.rows == []
        await _generate(s, {"prompt": prompt, "seed": 3})  # without classifier guidance it serves


@pytest.mark.parametrize("scale", [-0.5, 1e6, "NaN"])
async def test_out_of_range_classifier_scale_is_refused(scale: object) -> None:
    model, _ = _classified()
    async with serve(model) as s:
        error = await _refused(s, {"prompt": "a red circle", "classifier_scale": scale})
        assert error["field"] == "classifier_scale"


async def test_classifier_guidance_changes_the_image_and_scale_zero_does_not() -> None:
    body = {"prompt": "a red circle above a blue square", "seed": 7, "steps": 6}
    async with serve() as plain:
        reference = (await _generate(plain, body))["images"]
    model, heads = _classified()
    async with serve(model) as s:
        assert (await _generate(s, {**body, "classifier_scale": 0.0}))["images"] == reference
        assert heads.rows == []  # scale 0: the classifier never runs
        guided = (await _generate(s, {**body, "classifier_scale": 2.0}))["images"]
        assert guided != reference and heads.rows == [1] * 6
        again = (await _generate(s, {**body, "classifier_scale": 2.0}))["images"]
        assert again == guided


async def test_guided_and_unguided_requests_share_passes_and_match_alone() -> None:
    bodies = [
        {"prompt": "a red circle", "seed": 11, "steps": 5, "classifier_scale": 3.0},
        {"prompt": "a blue square left of a green ring", "seed": 12, "steps": 5},
        {"prompt": "a large white cross", "seed": 13, "steps": 4, "classifier_scale": 1.0, "num_images": 2},
        {"prompt": "a yellow diamond", "seed": 14, "steps": 5, "guidance": 1.0, "classifier_scale": 5.0},
    ]
    model, heads = _classified()
    async with serve(model) as s:
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        # one pass held all 5 rows: 4 cond + 4 uncond (the w = 1 request has none) = 9 rows,
        # and the classifier saw only the 4 rows that ask for it
        assert 9 in s.denoiser.calls and 4 in heads.rows
        for body, response in zip(bodies, responses):
            alone = await _generate(s, body)
            assert response.json()["images"] == alone["images"], "a batched image differs from it alone"
        assert len({r.json()["images"][0] for r in responses}) == 4
