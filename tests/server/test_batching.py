"""Step-level batching: shared forward passes, images independent of batch neighbours."""

from __future__ import annotations

import pytest

from tests.server.conftest import gated_burst, serve
from tests.server.known_model import POISON

pytestmark = pytest.mark.anyio


async def _alone(s, body: dict) -> dict:  # type: ignore[no-untyped-def]
    response = await s.client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("pipeline", [False, True], ids=["decode-inline", "decode-pipeline"])
async def test_eight_concurrent_requests_share_passes_and_match_alone(pipeline: bool) -> None:
    """Also with settings.decode_pipeline: the same passes, decodes and images, the decode only waited on later."""
    bodies = [{"prompt": f"scene {i}", "seed": 100 + i, "steps": 6, "guidance": 3.0} for i in range(8)]
    async with serve(decode_pipeline=pipeline) as s:
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200] * 8
        batched = [r.json() for r in responses]
        total = await s.sample(r"darkroom_batch_size_count")
        single = await s.sample(r'darkroom_batch_size_bucket\{le="1.0"\}')
        rows = await s.sample(r"darkroom_batch_size_sum")
        # 8 requests x 6 steps = 48 request-steps; with sharing, far fewer passes than 48
        assert total - single > 0, "no forward pass held more than one row"
        assert rows == 48
        assert total <= 12
        assert max(s.denoiser.calls) == 16  # 8 requests' rows, cond + uncond
        # the 7 that joined together finish together: one batched VAE decode
        assert s.model.vae.decode_calls[:2] == [1, 7]
        for body, got in zip(bodies, batched):
            alone = await _alone(s, body)
            assert got["metadata"]["seed"] == body["seed"]
            assert got["images"] == alone["images"], "a batched image differs from the same request alone"
        # distinct prompts give distinct images (the comparison above is not vacuous)
        assert len({b["images"][0] for b in batched}) == 8


@pytest.mark.parametrize("pipeline", [False, True], ids=["decode-inline", "decode-pipeline"])
async def test_different_samplers_steps_and_guidance_share_passes(pipeline: bool) -> None:
    bodies = [
        {"prompt": "a", "seed": 1, "sampler": "ddim", "steps": 3, "guidance": 2.0},
        {"prompt": "b", "seed": 2, "sampler": "dpmpp_2m", "steps": 5, "guidance": 5.0},
        {"prompt": "c", "seed": 3, "sampler": "heun", "steps": 4, "guidance": 1.0},
        {"prompt": "d", "seed": 4, "sampler": "euler_ancestral", "steps": 6, "guidance": 7.5, "num_images": 2},
        {"prompt": "e", "seed": 5, "sampler": "ddpm", "steps": 4, "guidance": 4.0,
         "guidance_interval": [0.5, 30.0]},
    ]
    async with serve(decode_pipeline=pipeline) as s:
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
        shared = await s.sample(r"darkroom_batch_requests_count") - await s.sample(
            r'darkroom_batch_requests_bucket\{le="1.0"\}'
        )
        assert shared >= 3, "requests with different samplers did not share passes"
        for body, response in zip(bodies, responses):
            got = response.json()
            assert got["metadata"]["sampler"] == body["sampler"]
            assert got["metadata"]["steps"] == body["steps"]
            assert got["metadata"]["guidance"] == body["guidance"]
            assert len(got["images"]) == body.get("num_images", 1)
            assert got["images"] == (await _alone(s, body))["images"]


async def test_a_request_whose_model_call_raises_fails_alone() -> None:
    bodies = [{"prompt": f"fine {i}", "seed": i, "steps": 3} for i in range(3)]
    bodies.insert(2, {"prompt": f"{POISON} pill", "seed": 9, "steps": 3})
    async with serve() as s:
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200, 200, 500, 200]
        error = responses[2].json()["error"]
        assert error["code"] == "model_error"
        assert await s.sample(r'darkroom_retries_total\{cause="model_error"\}') >= 1
        for body, response in zip(bodies, responses):
            if POISON not in body["prompt"]:
                assert response.json()["images"] == (await _alone(s, body))["images"]
        # the server keeps serving
        assert (await s.client.get("/readyz")).status_code == 200


async def test_out_of_memory_splits_the_batch_and_everyone_succeeds() -> None:
    bodies = [{"prompt": f"p{i}", "seed": i, "steps": 3} for i in range(4)]
    async with serve() as s:
        s.denoiser.oom_above_rows = 4  # a bucket of 4 requests is 4 cond + 4 uncond rows: too big
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200] * 4
        assert await s.sample(r'darkroom_retries_total\{cause="out_of_memory"\}') >= 1
        assert max(s.denoiser.calls) == 8  # the pass that failed; its halves (4 rows) ran
        s.denoiser.oom_above_rows = None
        for body, response in zip(bodies, responses):
            assert response.json()["images"] == (await _alone(s, body))["images"]


async def test_out_of_memory_alone_is_a_503_not_a_dead_process() -> None:
    async with serve() as s:
        s.denoiser.oom_above_rows = 1
        response = await s.client.post("/generate", json={"prompt": "x", "steps": 2, "guidance": 3.0})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "out_of_memory"
        s.denoiser.oom_above_rows = None
        assert (await s.client.post("/generate", json={"prompt": "x", "steps": 2})).status_code == 200


@pytest.mark.parametrize("pipeline", [False, True], ids=["decode-inline", "decode-pipeline"])
async def test_nan_output_gets_one_fp32_retry_then_nan_output_error(pipeline: bool) -> None:
    async with serve(decode_pipeline=pipeline) as s:
        clean = await _alone(s, {"prompt": "x", "seed": 3, "steps": 2})
        s.model.vae.nan_decodes = 1  # the batched decode gives NaN, the fp32 retry is fine
        retried = await _alone(s, {"prompt": "x", "seed": 3, "steps": 2})
        assert s.model.vae.fp32_decodes == 1
        assert retried["images"] == clean["images"]
        s.model.vae.nan_decodes = 2  # NaN in fp32 too: an error, never a black image with 200
        response = await s.client.post("/generate", json={"prompt": "x", "seed": 3, "steps": 2})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "nan_output"
        assert s.model.vae.fp32_decodes == 2


async def test_prompts_are_encoded_in_one_batched_call_and_cached() -> None:
    bodies = [{"prompt": f"cached {i % 2}", "seed": i, "steps": 2} for i in range(4)]
    async with serve() as s:
        encoder = s.model.text_encoder
        await gated_burst(s, bodies)
        # first arrival alone: its prompt and "" ; the 3 others together: one call with the new prompt
        assert encoder.calls == [["cached 0", ""], ["cached 1"]]
        await _alone(s, bodies[0])
        assert len(encoder.calls) == 2  # a cache hit


async def test_same_seed_same_image_different_seed_different_image() -> None:
    async with serve() as s:
        a = await _alone(s, {"prompt": "x", "seed": 5, "steps": 3})
        b = await _alone(s, {"prompt": "x", "seed": 5, "steps": 3})
        c = await _alone(s, {"prompt": "x", "seed": 6, "steps": 3})
        assert a["images"] == b["images"] and a["images"] != c["images"]
        random_seed = await _alone(s, {"prompt": "x", "steps": 1})
        assert isinstance(random_seed["metadata"]["seed"], int) and random_seed["metadata"]["seed"] >= 0


async def test_decode_pipeline_waits_for_a_decode_only_after_the_next_pass_is_queued() -> None:
    """settings.decode_pipeline: a group's decode is launched when it finishes and waited on (checked,
    encoded, handed off) after the next forward pass; with nothing left to overlap, at once."""
    bodies = [{"prompt": "short", "seed": 1, "steps": 2}, {"prompt": "long", "seed": 2, "steps": 5}]
    async with serve(decode_pipeline=True) as s:
        engine, events = s.engine, []
        launch, finish = engine._launch_decode, engine._finish_decoded

        def spy_launch(works):  # type: ignore[no-untyped-def]
            events.append(("launch", works[0].spec.prompt, len(s.denoiser.calls)))
            launch(works)

        def spy_finish(model, works, *rest):  # type: ignore[no-untyped-def]
            events.append(("finish", works[0].spec.prompt, len(s.denoiser.calls)))
            finish(model, works, *rest)

        engine._launch_decode, engine._finish_decoded = spy_launch, spy_finish
        responses = await gated_burst(s, bodies)
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        passes = {(kind, prompt): calls for kind, prompt, calls in events}
        assert passes[("finish", "short")] == passes[("launch", "short")] + 1
        assert passes[("finish", "long")] == passes[("launch", "long")]
        assert engine._pending_decodes == []
        for body, response in zip(bodies, responses):
            assert response.json()["images"] == (await _alone(s, body))["images"]
