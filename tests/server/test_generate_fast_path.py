"""POST /generate's fast path (server.app.GenerateFastPath) answers as FastAPI's route does."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import serve

pytestmark = pytest.mark.anyio

BODY = {"prompt": "a red circle", "seed": 7, "steps": 3, "guidance": 2.0}
FAST = {"Content-Type": "application/json"}
ROUTED = {"Content-Type": "application/json; charset=utf-8"}  # not the fast path's exact type: FastAPI's route


def _comparable(response_json: dict) -> dict:
    metadata = {k: v for k, v in response_json["metadata"].items() if k != "timings"}
    return {"format": response_json["format"], "images": response_json["images"], "metadata": metadata,
            "timings": sorted(response_json["metadata"]["timings"])}


async def test_fast_path_and_route_give_the_same_json_and_image_bytes() -> None:
    async with serve() as s:
        fast = await s.client.post("/generate", content=json.dumps(BODY), headers=FAST)
        routed = await s.client.post("/generate", content=json.dumps(BODY), headers=ROUTED)
        assert fast.status_code == routed.status_code == 200
        assert _comparable(fast.json()) == _comparable(routed.json())
        assert fast.headers["x-request-id"] == fast.json()["id"] != routed.json()["id"]
        raw_fast = await s.client.post("/generate", content=json.dumps(BODY), headers={**FAST, "Accept": "image/png"})
        raw_routed = await s.client.post("/generate", content=json.dumps(BODY),
                                         headers={**ROUTED, "Accept": "image/png"})
        assert raw_fast.status_code == raw_routed.status_code == 200
        assert raw_fast.content == raw_routed.content
        assert raw_fast.headers["content-type"] == raw_routed.headers["content-type"] == "image/png"
        assert sorted(raw_fast.headers) == sorted(raw_routed.headers)
        assert len(s.denoiser.calls) == 4 * 3  # four requests of three steps, none served twice


async def test_errors_on_the_fast_path_match_the_route() -> None:
    cases = [
        ({"prompt": "x", "steps": 0}, {}, 422),  # fails validation: FastAPI answers
        ({"prompt": "x", "width": 31}, {}, 422),  # valid body, model-specific error from the route's code
        ({"prompt": "x", "num_images": 2}, {"Accept": "image/png"}, 406),
        ({"prompt": "x", "model": "nope"}, {}, 422),
    ]
    async with serve() as s:
        for body, headers, status in cases:
            fast = await s.client.post("/generate", content=json.dumps(body), headers={**FAST, **headers})
            routed = await s.client.post("/generate", content=json.dumps(body), headers={**ROUTED, **headers})
            assert fast.status_code == routed.status_code == status, (body, fast.text, routed.text)
            assert fast.json() == routed.json()
        broken = await s.client.post("/generate", content=b'{"prompt": ', headers=FAST)
        assert broken.status_code == 422 and broken.json()["error"]["field"] == "body"
        assert s.denoiser.calls == []


async def test_api_keys_are_checked_with_the_fast_path_off() -> None:
    async with serve(api_keys=["k1"]) as s:
        refused = await s.client.post("/generate", content=json.dumps(BODY), headers=FAST)
        assert refused.status_code == 401
        allowed = await s.client.post("/generate", content=json.dumps(BODY),
                                      headers={**FAST, "Authorization": "Bearer k1"})
        assert allowed.status_code == 200
