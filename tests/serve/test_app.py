"""edgesr serve's HTTP app on a real uvicorn server: outputs, limits, queue, token, metrics."""

import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from serve.helpers import GatedSession, LiveServer, png_bytes

from edgesr.serve.app import create_app
from edgesr.serve.config import Limits, ServeConfig


def _app(tmp_path, engines, token=None, **limits):
    config = ServeConfig(work_dir=tmp_path / "work", token=token, limits=Limits(**limits))
    return create_app(config, engines, {name: {"tile": 16, "overlap": 4} for name in engines})


def _decoded(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def _api_output(session, data: bytes) -> np.ndarray:
    return session.upscale(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_upscale_raw_and_multipart_equal_the_api(tmp_path, session):
    data = png_bytes()
    with LiveServer(_app(tmp_path, {"tiny": session})) as live:
        raw = httpx.post(f"{live.url}/v1/upscale", content=data, timeout=60)
        form = httpx.post(f"{live.url}/v1/upscale", params={"format": "png", "model": "tiny"},
                          files={"file": ("a.png", data, "image/png")}, timeout=60)
        jpeg = httpx.post(f"{live.url}/v1/upscale", params={"format": "jpg"}, content=data,
                          timeout=60)
    expected = _api_output(session, data)
    for response in (raw, form):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert np.array_equal(_decoded(response.content), expected)
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    assert _decoded(jpeg.content).shape == expected.shape
    assert not list((tmp_path / "work" / "uploads").iterdir())
    assert not list((tmp_path / "work" / "results").iterdir())


def test_heic_in_heic_out_and_avif_on_request(tmp_path, session):
    pytest.importorskip("pillow_heif")
    from edgesr.heif import register_openers

    register_openers()
    heic = png_bytes(24, 32, seed=4, fmt="HEIF")
    with LiveServer(_app(tmp_path, {"tiny": session})) as live:
        same = httpx.post(f"{live.url}/v1/upscale", content=heic, timeout=60)
        avif = httpx.post(f"{live.url}/v1/upscale", params={"format": "avif"}, content=heic,
                          timeout=60)
    assert same.status_code == 200 and same.headers["content-type"] == "image/heic"
    assert avif.status_code == 200 and avif.headers["content-type"] == "image/avif"
    for response, fmt in ((same, "HEIF"), (avif, "AVIF")):
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == fmt and image.size == (64, 48)


def test_jobs_queue_a_large_image_and_serve_its_result(tmp_path, session):
    data = png_bytes(40, 36, seed=3)
    with LiveServer(_app(tmp_path, {"tiny": session})) as live:
        job = httpx.post(f"{live.url}/v1/jobs", content=data, timeout=60)
        assert job.status_code == 202, job.text
        status_url = job.json()["status_url"]
        state = {}
        for _ in range(600):
            state = httpx.get(live.url + status_url, timeout=60).json()
            if state["state"] != "queued" and state["state"] != "running":
                break
            time.sleep(0.05)
        assert state["state"] == "done", state
        result = httpx.get(live.url + job.json()["result_url"], timeout=60)
        unknown = httpx.get(f"{live.url}/v1/jobs/{'0' * 32}", timeout=60)
        dotted = httpx.get(f"{live.url}/v1/jobs/..%2F..%2Fetc%2Fpasswd/result", timeout=60)
    assert result.status_code == 200
    assert np.array_equal(_decoded(result.content), _api_output(session, data))
    assert unknown.status_code == 404 and "no job" in unknown.json()["error"]
    assert dotted.status_code == 404


def test_full_queue_answers_429_with_retry_after(tmp_path, session):
    gated = GatedSession(session)
    app = _app(tmp_path, {"tiny": gated}, queue_size=1, workers=1)
    data = png_bytes()
    answers = {}

    def send(key):
        answers[key] = httpx.post(f"{live.url}/v1/upscale", content=data, timeout=60)

    with LiveServer(app) as live:
        first = threading.Thread(target=send, args=("running",))
        first.start()
        assert gated.started.wait(60)  # the worker holds the first image
        second = threading.Thread(target=send, args=("queued",))
        second.start()
        for _ in range(1200):
            if app.state.work.depth == 1:
                break
            time.sleep(0.05)
        assert app.state.work.depth == 1
        refused = httpx.post(f"{live.url}/v1/upscale", content=data, timeout=60)
        gated.gate.set()
        first.join(60)
        second.join(60)
        metrics = httpx.get(f"{live.url}/metrics", timeout=60).text
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "queue is full" in refused.json()["error"]
    assert answers["running"].status_code == 200 and answers["queued"].status_code == 200
    assert "edgesr_queue_rejected_total 1.0" in metrics


def test_oversized_and_corrupt_images_get_one_line_and_the_server_stays_up(tmp_path, session):
    data = png_bytes()
    corrupt = data[:60]  # a valid header, the pixel data cut off
    with LiveServer(_app(tmp_path, {"tiny": session}, max_upload_bytes=len(data) + 10,
                         max_pixels=30 * 30, max_output_pixels=56 * 40)) as live:
        post = lambda body, **kw: httpx.post(f"{live.url}/v1/upscale", content=body,  # noqa: E731
                                             timeout=60, **kw)
        too_big = post(data + b"\0" * 100)
        flat = io.BytesIO()
        Image.new("RGB", (40, 40), (90, 120, 30)).save(flat, "PNG")  # small file, many pixels
        too_many_pixels = post(flat.getvalue())
        broken = post(corrupt)
        not_image = post(b"hello, not an image")
        empty = post(b"")
        bad_model = post(data, params={"model": "nope"})
        too_large_out = post(data, params={"outscale": 3})
        health = httpx.get(f"{live.url}/healthz", timeout=60)
        still_works = post(data)
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
    assert too_many_pixels.status_code == 413
    assert "40x40 = 1600 pixels exceeds the limit of 900" in too_many_pixels.json()["error"]
    for response in (broken, not_image, empty):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error
    assert too_large_out.status_code == 413
    assert "28x20 image at x3 gives 5040 pixels" in too_large_out.json()["error"]
    assert bad_model.status_code == 404 and "tiny" in bad_model.json()["error"]
    assert health.status_code == 200 and still_works.status_code == 200


def test_a_request_past_its_timeout_gets_504(tmp_path, session):
    gated = GatedSession(session)
    with LiveServer(_app(tmp_path, {"tiny": gated}, timeout_s=0.2)) as live:
        late = httpx.post(f"{live.url}/v1/upscale", content=png_bytes(), timeout=60)
        gated.gate.set()
    assert late.status_code == 504 and "not done within" in late.json()["error"]
    assert not list((tmp_path / "work" / "results").iterdir())


def test_token_is_required_when_set(tmp_path, session):
    with LiveServer(_app(tmp_path, {"tiny": session}, token="s3cret")) as live:
        missing = httpx.post(f"{live.url}/v1/upscale", content=png_bytes(), timeout=60)
        wrong = httpx.get(f"{live.url}/metrics", headers={"Authorization": "Bearer nope"})
        docs = httpx.get(f"{live.url}/openapi.json")
        health = httpx.get(f"{live.url}/healthz")
        right = httpx.post(f"{live.url}/v1/upscale", content=png_bytes(), timeout=60,
                           headers={"Authorization": "Bearer s3cret"})
    assert missing.status_code == 401 and wrong.status_code == 401 and docs.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert health.status_code == 200 and right.status_code == 200


def test_metrics_and_openapi(tmp_path, session):
    with LiveServer(_app(tmp_path, {"tiny": session})) as live:
        assert httpx.post(f"{live.url}/v1/upscale", content=png_bytes(), timeout=60).is_success
        metrics = httpx.get(f"{live.url}/metrics", timeout=60)
        openapi = httpx.get(f"{live.url}/openapi.json", timeout=60).json()
        ready = httpx.get(f"{live.url}/readyz", timeout=60)
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ('edgesr_requests_total{endpoint="/v1/upscale",status="200"} 1.0',
                 "edgesr_request_duration_seconds_bucket", "edgesr_queue_depth",
                 "edgesr_jobs_running", 'edgesr_images_total{model="tiny",outcome="done"} 1.0',
                 'edgesr_tiles_total{model="tiny"} 4.0',
                 'edgesr_input_pixels_total{model="tiny"} 560.0', "edgesr_upscale_seconds_count"):
        assert name in text, name
    assert 'backend="torch"' in text and 'name="tiny"' in text and 'precision="' in text
    assert {"/v1/upscale", "/v1/jobs", "/v1/jobs/{job_id}", "/healthz", "/readyz",
            "/metrics"} <= set(openapi["paths"])
    body = openapi["paths"]["/v1/upscale"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data"} <= set(body)
    assert ready.json()["models"] == ["tiny"]


def test_shutdown_finishes_the_image_in_flight_and_the_queued_job(tmp_path, session):
    gated = GatedSession(session)
    app = _app(tmp_path, {"tiny": gated})
    answer = {}
    live = LiveServer(app).__enter__()

    def send():
        answer["response"] = httpx.post(f"{live.url}/v1/upscale", content=png_bytes(),
                                        timeout=60)

    client = threading.Thread(target=send)
    client.start()
    assert gated.started.wait(60)
    queued = httpx.post(f"{live.url}/v1/jobs", content=png_bytes(seed=7), timeout=60).json()
    live.server.should_exit = True  # as SIGTERM does
    gated.gate.set()
    client.join(60)
    live.__exit__(None, None, None)
    assert answer["response"].status_code == 200
    job = app.state.work.kept[queued["id"]]
    assert job.state == "done" and job.target.is_file()
    assert not app.state.work.accepting


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_binding_another_address_needs_a_token(host, capsys):
    from edgesr.cli import main

    assert main(["serve", "--host", host]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgesr: error: refusing to listen on") and "\n" not in err
