"""Every 4xx names its field and happens before any model work; no input makes a 500."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tests.server.conftest import serve

pytestmark = pytest.mark.anyio


def _image_b64(fmt: str = "PNG", size: tuple[int, int] = (16, 16)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


OK = {"prompt": "a red circle"}

# (body, field named in the error) for POST /generate; the known model: latent factor 2,
# sides 4..64, max_batch 8
GENERATE_CASES: list[tuple[object, str]] = [
    ({**OK, "width": 17}, "width"),
    ({**OK, "height": 15}, "height"),
    ({**OK, "width": 66}, "width"),
    ({**OK, "width": 2}, "width"),
    ({**OK, "width": 100000}, "width"),
    ({**OK, "steps": 0}, "steps"),
    ({**OK, "steps": 1001}, "steps"),
    ({**OK, "steps": "many"}, "steps"),
    ({**OK, "steps": 2.5}, "steps"),
    ({**OK, "guidance": -1}, "guidance"),
    ({**OK, "guidance": 51}, "guidance"),
    ({**OK, "num_images": 0}, "num_images"),
    ({**OK, "num_images": 9}, "num_images"),
    ({**OK, "model": "nope"}, "model"),
    ({**OK, "sampler": "nope"}, "sampler"),
    ({**OK, "seed": -1}, "seed"),
    ({**OK, "seed": 2**70}, "seed"),
    ({**OK, "strength": 0}, "strength"),
    ({**OK, "strength": 1.5}, "strength"),
    ({**OK, "output_format": "bmp"}, "output_format"),
    ({**OK, "guidance_interval": [2.0, 1.0]}, "guidance_interval"),
    ({**OK, "guidance_interval": [1.0]}, "guidance_interval.1"),
    ({**OK, "init_image": "!!not base64!!"}, "init_image"),
    ({**OK, "init_image": base64.b64encode(b"hello world").decode()}, "init_image"),
    ({**OK, "init_image": _image_b64("GIF")}, "init_image"),
    ({**OK, "init_image": ""}, "init_image"),
    ({**OK, "control_image": _image_b64()}, "control_image"),
    ({**OK, "controlnet": "canny"}, "controlnet"),
    ({**OK, "promt": "typo"}, "promt"),
    ({"negative_prompt": "x"}, "prompt"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": {"nested": 1}}, "prompt"),
    ({"prompt": 12}, "prompt"),
    ({**OK, "preview": "maybe"}, "preview"),
    ([], "body"),
    ("just a string", "body"),
    (None, "body"),
]

# raw bodies that are not plain JSON objects (NaN and Infinity are JSON extensions Python accepts)
RAW_CASES: list[tuple[bytes, str]] = [
    (b'{"prompt": "x", "guidance": NaN}', "guidance"),
    (b'{"prompt": "x", "guidance": Infinity}', "guidance"),
    (b'{"prompt": "x", "strength": -Infinity}', "strength"),
    (b'{"prompt": "x", "steps": NaN}', "steps"),
    (b'{"prompt": "x", "guidance_interval": [NaN, 1]}', "guidance_interval.0"),
    (b'{"prompt": "x",', "body"),
    (b"\xff\xfe\x00garbage", "body"),
    (b'{"prompt": "\\ud800"}', "prompt"),
    (b"", "body"),
    (b"[" * 5000 + b"]" * 5000, "body"),
]


async def _assert_rejected(s, response, field: str) -> None:  # type: ignore[no-untyped-def]
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["field"] == field, error
    assert isinstance(error["code"], str) and error["message"]


async def test_every_generate_4xx_names_its_field_and_the_model_is_never_called() -> None:
    async with serve() as s:
        for body, field in GENERATE_CASES:
            response = await s.client.post("/generate", json=body)
            await _assert_rejected(s, response, field)
        for raw, field in RAW_CASES:
            response = await s.client.post("/generate", content=raw, headers={"content-type": "application/json"})
            await _assert_rejected(s, response, field)
        assert s.denoiser.calls == [] and s.model.text_encoder.calls == [] and s.model.vae.decode_calls == []
        assert s.model.vae.encode_calls == 0
        assert await s.sample(r'darkroom_rejections_total\{reason="invalid_request"\}') >= len(GENERATE_CASES)


async def test_pixel_budget_and_accept_and_job_paths_name_fields() -> None:
    async with serve(max_batch_pixels=4096) as s:
        response = await s.client.post("/generate", json={**OK, "width": 64, "height": 64, "num_images": 2})
        await _assert_rejected(s, response, "num_images")
        response = await s.client.post("/generate", json={**OK, "num_images": 2}, headers={"accept": "image/png"})
        assert response.status_code == 406
        await _assert_rejected(s, response, "num_images")
        await _assert_rejected(s, await s.client.post("/v1/jobs", json={**OK, "steps": 0}), "steps")
        await _assert_rejected(s, await s.client.get("/v1/jobs/nope"), "id")
        await _assert_rejected(s, await s.client.delete("/v1/jobs/nope"), "id")
        await _assert_rejected(s, await s.client.get("/v1/jobs/nope/events"), "id")
        await _assert_rejected(s, await s.client.get("/no/such/route"), "path")
        await _assert_rejected(s, await s.client.put("/generate", json=OK), "method")
        assert s.denoiser.calls == []


async def test_openai_route_names_its_own_fields() -> None:
    async with serve() as s:
        cases = [
            ({**OK, "size": "big"}, "size"),
            ({**OK, "size": "17x16"}, "size"),
            ({**OK, "size": "640x640"}, "size"),
            ({**OK, "n": 0}, "n"),
            ({**OK, "n": 9}, "n"),
            ({**OK, "response_format": "url"}, "response_format"),
            ({**OK, "model": "dall-e-9"}, "model"),
        ]
        for body, field in cases:
            await _assert_rejected(s, await s.client.post("/v1/images/generations", json=body), field)
        assert s.denoiser.calls == []


async def test_oversized_body_is_413_before_parsing() -> None:
    async with serve(max_body_bytes=2048) as s:
        big = {**OK, "init_image": "A" * 4096}
        response = await s.client.post("/generate", json=big)
        assert response.status_code == 413
        assert response.json()["error"] == {
            "code": "payload_too_large", "message": "the request body is over 2048 bytes", "field": "body"}

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(4):
                yield b" " * 1024  # no Content-Length: counted as it streams

        streamed = await s.client.post("/generate", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert s.model.text_encoder.calls == []


async def test_bearer_keys_guard_the_api_but_not_health() -> None:
    async with serve(api_keys=["k1", "k2"]) as s:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic azE="}):
            response = await s.client.post("/generate", json=OK, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["field"] == "authorization"
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await s.client.get("/v1/models")).status_code == 401
        assert (await s.client.get("/healthz")).status_code == 200
        assert (await s.client.get("/readyz")).status_code == 200
        ok = await s.client.post("/generate", json={**OK, "steps": 1}, headers={"authorization": "Bearer k2"})
        assert ok.status_code == 200
        assert s.denoiser.calls != []


NASTY = [
    {}, {"prompt": ""}, {"prompt": "\x00\x01\x02"}, {"prompt": "🦊" * 1000}, {"prompt": "x", "seed": 0},
    {"prompt": "x", "steps": True}, {"prompt": "x", "width": None}, {"prompt": "x", "width": 1e300},
    {"prompt": "x", "width": 16.0}, {"prompt": "x", "num_images": "2"}, {"prompt": "x", "guidance": "7"},
    {"prompt": "x", "init_image": None}, {"prompt": "x", "init_image": "data:image/png;base64,"},
    {"prompt": "x", "init_image": "data:image/png;base64," + _image_b64(size=(300, 7))},
    {"prompt": "x", "init_image": _image_b64("JPEG", (1, 1)), "strength": 1e-9},
    {"prompt": "x", "guidance_interval": [0, 1e308]}, {"prompt": "x", "guidance_interval": [-1, 2]},
    {"prompt": "x", "guidance_interval": "[0,1]"}, {"prompt": "x", "sampler": ""},
    {"prompt": "x", "sampler": None, "model": None, "steps": None}, {"prompt": "x", "model": "../../etc/passwd"},
    {"prompt": "x", "output_format": "PNG"}, {"prompt": ["x"]}, {"prompt": "x", "negative_prompt": None},
    {"prompt": "x", "control_scale": -1}, {"prompt": "x", "steps": 10**30}, {"prompt": "x", "width": -16},
    {"prompt": "x", "sampler": "pc", "steps": 1}, {"prompt": "x", "sampler": "onestep", "steps": 1},
    {"prompt": "x", "sampler": "lcm", "steps": 2}, {"prompt": "x", "guidance": 0}, {"prompt": "x", "guidance": 1},
]


async def test_no_nasty_body_yields_a_500() -> None:
    async with serve() as s:
        for body in NASTY:
            response = await s.client.post("/generate", json=body)
            assert response.status_code != 500 and response.status_code < 502, (body, response.text[:200])
            if response.status_code >= 400:
                assert response.json()["error"]["field"], (body, response.text)
        for body in NASTY:
            response = await s.client.post("/v1/images/generations", json=body)
            assert response.status_code != 500, (body, response.text[:200])
        for raw in [b"{}", b"null", b"1e999999", b'{"prompt": 1e999999}', b'"\\u0000"', b"{" * 100000]:
            response = await s.client.post("/generate", content=raw, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (raw[:20], response.text[:200])
        response = await s.client.post("/generate", content=json.dumps(OK), headers={"content-type": "text/plain"})
        assert response.status_code in (200, 415, 422)
