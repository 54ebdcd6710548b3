"""``seqtag serve``: the API against ``seqtag predict``'s JSON lines (the oracle), batched against
unbatched, every refusal, backpressure and timeouts in process; a real server on a loopback port
under concurrent load, after bad requests, and stopped by SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from seqtag.cli.app import main  # noqa: E402
from seqtag.config import ServeConfig  # noqa: E402
from seqtag.serving.predictor import Predictor  # noqa: E402
from seqtag.serving.server import create_app  # noqa: E402

from ..helpers import bio_sentences, odd_sentences, random_sentences, trained_tagger  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small BIO CRF tagger: ``{"directory": DIR, "onnx": FILE}`` and the tagger itself."""
    from seqtag.serving.onnx_export import to_onnx

    root = tmp_path_factory.mktemp("serve_models")
    tagger = trained_tagger(bio_sentences(120, seed=1), crf=True, tag_scheme="auto")
    tagger.save(root / "model")
    to_onnx(root / "model", root / "tagger.onnx")
    return {"directory": root / "model", "onnx": root / "tagger.onnx", "tagger": tagger}


@pytest.fixture(scope="module")
def sentences(models):
    """Known, unknown, non-ASCII, over-long and 1- to 500-token sentences (no empty ones)."""
    return [s for s in odd_sentences(models["tagger"]) if s]


def _predict_jsonl(model, sentences, tmp_path, capsys, *flags) -> list[dict]:
    """``seqtag predict MODEL --output-format jsonl FLAGS`` on ``sentences``: the oracle."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"tokens": s}, ensure_ascii=False) + "\n" for s in sentences), encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(model), "--input", str(path), "--output-format", "jsonl", "--workers", "1", *flags]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _same(got: list[dict], expected: list[dict]) -> None:
    """Equal tokens, tags and n-best tags; probabilities equal to float32 rounding (a batch of
    other sentences changes the order of additions)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        assert g["tokens"] == e["tokens"] and g["tags"] == e["tags"]
        if "confidence" in e:
            assert g["confidence"] == pytest.approx(e["confidence"], abs=1e-5)
        if "nbest" in e:
            assert [p["tags"] for p in g["nbest"]] == [p["tags"] for p in e["nbest"]]
            assert [p["log_prob"] for p in g["nbest"]] == pytest.approx([p["log_prob"] for p in e["nbest"]], abs=1e-4)


def _run(app, fn):
    """``fn(client)`` against ``app`` in process, between its start-up and its shutdown."""

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve", timeout=30) as client:
                return await fn(client)

    return asyncio.run(go())


def _post_all(app, bodies: list) -> list[httpx.Response]:
    """POST every body to /v1/tag at once (concurrently); the responses in order."""

    async def fn(client):
        return await asyncio.gather(*(client.post("/v1/tag", json=b) for b in bodies))

    return _run(app, fn)


def _fake(predict) -> Predictor:
    return Predictor("fake model", "fake", {"predict": predict, "predict_with_confidence": None, "nbest": None})


# -- the API against seqtag predict --------------------------------------------------------


@pytest.mark.parametrize("kind", ["onnx", "directory"])
@pytest.mark.parametrize("options", [{}, {"confidence": True, "nbest": 3}])
def test_answers_are_what_predict_writes_as_json_lines(models, sentences, tmp_path, capsys, kind, options):
    flags = ["--confidence", "--nbest", "3"] if options else []
    expected = _predict_jsonl(models[kind], sentences, tmp_path, capsys, *flags)
    app = create_app(models[kind], ServeConfig(max_batch_size=16))
    one, *each = _post_all(app, [{"sentences": sentences, **options}] + [{"sentences": [s], **options} for s in sentences])
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    _same(one.json()["sentences"], expected)
    _same([r.json()["sentences"][0] for r in each], expected)


def test_text_is_read_as_predict_reads_a_text_file(models, tmp_path, capsys):
    text = "The  dog\tbarked .\r\n\n  \nÜber naïve\u2028cat\nx"
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    capsys.readouterr()
    assert main(["predict", str(models["onnx"]), "--input", str(path), "--output-format", "jsonl", "--workers", "1"]) == 0
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (response,) = _post_all(create_app(models["onnx"]), [{"text": text}])
    assert response.json()["sentences"] == expected
    assert [s["tokens"] for s in expected] == [["The", "dog", "barked", "."], ["Über", "naïve", "cat"], ["x"]]


def test_batched_answers_equal_unbatched(models, sentences):
    bodies = [{"sentences": [s], "confidence": True} for s in sentences]
    batched_app = create_app(models["onnx"], ServeConfig(max_batch_size=64, max_wait_ms=200))
    batched = _post_all(batched_app, bodies)
    alone = _post_all(create_app(models["onnx"], ServeConfig(max_batch_size=1)), bodies)
    _same([r.json()["sentences"][0] for r in batched], [r.json()["sentences"][0] for r in alone])
    histogram = batched_app.state.metrics.batch.collect()[0].samples
    count = next(s.value for s in histogram if s.name.endswith("_count"))
    assert count < len(bodies) / 4, "expected the concurrent requests to share batches"


def test_empty_requests_and_the_other_endpoints(models):
    app = create_app(models["onnx"], ServeConfig(max_sentences=7))

    async def fn(client):
        return [await client.post("/v1/tag", json={"sentences": []}), await client.post("/v1/tag", json={"text": "\n \n"}),
                await client.get("/health"), await client.get("/ready"), await client.get("/v1/model"),
                await client.get("/metrics")]  # fmt: skip

    empty, blank, health, ready, model, metrics = _run(app, fn)
    assert empty.json() == blank.json() == {"sentences": []}
    assert health.json() == {"status": "alive"} and ready.json() == {"status": "ready"}
    info = model.json()
    assert info["api_version"] == 1 and info["model"]["format"] == "onnx"
    assert info["model"]["tags"] == list(models["tagger"].vocabs.tags.itos)
    assert info["limits"]["max_sentences"] == 7 and info["capabilities"] == {"confidence": True, "nbest": True}
    assert "onnxruntime" in info["versions"]
    for name in ("seqtag_requests_total", "seqtag_request_seconds", "seqtag_server_seconds", "seqtag_batch_sentences",
                 "seqtag_queue_sentences", "seqtag_sentences_tagged_total", "seqtag_tokens_tagged_total"):  # fmt: skip
        assert name in metrics.text, name


# -- refusals ---------------------------------------------------------------------------------

LIMITS = ServeConfig(max_body_bytes=300_000, max_sentences=3, max_tokens=5, max_nbest=4)


BAD_REQUESTS = [
    (b"{not json", 400, None),
    (b"\xff\xfe\x00", 400, None),
    ('{"sentences": [["a"]]}'.encode("utf-16"), 400, None),  # JSON, but not UTF-8
    ('{"sentences": [["a"]]}'.encode("utf-32-le"), 400, None),
    (b'{"sentences": [["\xed\xa0\x80"]]}', 400, None),  # a surrogate in UTF-8 bytes
    (b"[" * 200_000 + b"]" * 200_000, 413, "body"),
    (b"[" * 100_000 + b"]" * 100_000, 400, None),  # nested deeper than the JSON parser goes
    (b"[1, 2]", 422, None),
    (b'{"sentences": [["a"]], "extra": 1}', 422, "extra"),
    (b'{"sentences": [["a"]], "sentences": [["b", "c"]]}', 422, "sentences"),  # not the last one silently
    (b'{"sentences": [["a"]], "nbest": 9, "nbest": 1}', 422, "nbest"),
    (b'{"confidence": true}', 422, "sentences"),
    (b'{"sentences": [["a"]], "text": "a"}', 422, "sentences"),
    (b'{"sentences": "a b"}', 422, "sentences"),
    (b'{"sentences": [["a"], "b"]}', 422, "sentences[1]"),
    (b'{"sentences": [["a"], []]}', 422, "sentences[1]"),
    (b'{"sentences": [["a", 1]]}', 422, "sentences[0][1]"),
    (b'{"sentences": [["a", null]]}', 422, "sentences[0][1]"),
    (b'{"sentences": [["\\ud800"]]}', 422, "sentences[0][0]"),
    (b'{"text": ["a"]}', 422, "text"),
    (b'{"text": "a \\ud800"}', 422, "text"),
    (b'{"sentences": [["a"], ["b"], ["c"], ["d"]]}', 413, "sentences"),
    (b'{"text": "a\\nb\\nc\\nd"}', 413, "text"),
    (b'{"sentences": [["a", "b", "c", "d", "e", "f"]]}', 422, "sentences[0]"),
    (b'{"text": "a\\na b c d e f"}', 422, "text"),
    (b'{"sentences": [["a"]], "confidence": 1}', 422, "confidence"),
    (b'{"sentences": [["a"]], "nbest": -1}', 422, "nbest"),
    (b'{"sentences": [["a"]], "nbest": 5}', 422, "nbest"),
    (b'{"sentences": [["a"]], "nbest": 2.0}', 422, "nbest"),
    (b'{"sentences": [["a"]], "nbest": true}', 422, "nbest"),
    (b'{"sentences": [["a"]], "nbest": 1e999}', 422, "nbest"),
    (b'{"sentences": [["a"]], "nbest": ' + b"9" * 5000 + b"}", 400, None),  # more digits than int() reads
]


@pytest.mark.parametrize("body, status, field", BAD_REQUESTS, ids=[b[:40].decode("latin-1") for b, _, _ in BAD_REQUESTS])
def test_bad_requests_are_refused_with_the_field_and_leave_the_server_ready(models, body, status, field):
    app = create_app(models["onnx"], LIMITS)

    async def fn(client):
        bad = await client.post("/v1/tag", content=body, headers={"content-type": "application/json"})
        return bad, await client.get("/ready"), await client.post("/v1/tag", json={"sentences": [["a", "b"]]})

    bad, ready, good = _run(app, fn)
    assert bad.status_code == status, bad.text
    error = bad.json()["error"]
    assert error["status"] == status and error["message"]
    assert error.get("field") == field
    if status == 413 and field == "sentences":
        assert error["limit"] == 3
    assert ready.status_code == 200 and good.status_code == 200


def test_a_body_with_both_a_length_and_chunks_is_refused_and_the_connection_closed(models):
    async def fn(client):
        body = b'{"sentences": [["a"]]}'
        return await client.post("/v1/tag", content=body, headers={"transfer-encoding": "chunked"})

    response = _run(create_app(models["onnx"], LIMITS), fn)
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"
    assert response.headers["connection"] == "close"  # RFC 9112, 6.1: the server MUST close


def test_a_utf8_byte_order_mark_is_skipped(models):
    async def fn(client):
        return await client.post("/v1/tag", content=b'\xef\xbb\xbf{"sentences": [["a", "b"]]}')

    response = _run(create_app(models["onnx"], LIMITS), fn)
    assert response.status_code == 200 and response.json()["sentences"][0]["tokens"] == ["a", "b"]


def test_unknown_paths_and_wrong_methods_get_the_json_error(models):
    async def fn(client):
        return [await client.get("/v1/tag"), await client.post("/ready", json={}), await client.get("/nope"),
                await client.post("/v2/tag", json={"sentences": [["a"]]})]  # fmt: skip

    get_tag, post_ready, nope, v2 = _run(create_app(models["onnx"], LIMITS), fn)
    assert [r.status_code for r in (get_tag, post_ready, nope, v2)] == [405, 405, 404, 404]
    assert get_tag.headers["allow"] == "POST" and "GET" in post_ready.headers["allow"]
    for r in (get_tag, post_ready, nope, v2):
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert error["status"] == r.status_code and "\n" not in error["message"]
    assert get_tag.json()["error"]["message"] == "GET '/v1/tag': this endpoint takes POST"
    assert nope.json()["error"]["message"].startswith("GET '/nope': no such endpoint; expected one of /v1/tag, ")


def test_a_body_without_a_length_is_cut_at_the_limit(models):
    async def chunks():
        for _ in range(10):
            yield b" " * 500

    async def fn(client):
        return await client.post("/v1/tag", content=chunks())

    response = _run(create_app(models["onnx"], LIMITS.replace(max_body_bytes=2000)), fn)
    assert response.status_code == 413 and response.json()["error"]["limit"] == 2000


def test_a_format_without_nbest_refuses_it(models):
    def predict(sentences):
        return [["A"] * len(s) for s in sentences]

    async def fn(client):
        return await client.post("/v1/tag", json={"sentences": [["a"]], "nbest": 2})

    response = _run(create_app("fake", predictor=_fake(predict)), fn)
    assert response.status_code == 422 and response.json()["error"]["field"] == "nbest"


def test_a_failing_request_does_not_fail_the_others_in_its_batch(models):
    def predict(sentences):
        if any("BOOM" in s for s in sentences):
            raise RuntimeError("the model cannot tag BOOM")
        return [["A"] * len(s) for s in sentences]

    app = create_app("fake", ServeConfig(max_wait_ms=300), predictor=_fake(predict))
    bodies = [{"sentences": [["x"] * (i + 1)]} for i in range(6)]
    bodies[3] = {"sentences": [["BOOM"]]}
    responses = _post_all(app, bodies)
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200]
    assert "BOOM" in responses[3].json()["error"]["message"]
    assert responses[5].json()["sentences"] == [{"tokens": ["x"] * 6, "tags": ["A"] * 6}]
    histogram = app.state.metrics.batch.collect()[0].samples
    assert next(s.value for s in histogram if s.name.endswith("_count")) == 1  # one batch, run again one by one


def _blocking_predictor():
    release = threading.Event()

    def predict(sentences):
        if sentences != [["warm", "up", "."]]:
            release.wait(10)
        return [["A"] * len(s) for s in sentences]

    return _fake(predict), release


def test_a_full_queue_answers_503_with_retry_after(models):
    predictor, release = _blocking_predictor()
    app = create_app("fake", ServeConfig(max_batch_size=1, max_queue=3, max_sentences=2), predictor=predictor)

    async def fn(client):
        first = asyncio.ensure_future(client.post("/v1/tag", json={"sentences": [["a"]]}))  # in the model
        while app.state.serving["batcher"].running == 0:
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(client.post("/v1/tag", json={"sentences": [["b"], ["c"]]}))]
        while app.state.serving["batcher"].queued < 2:
            await asyncio.sleep(0.01)
        full = await client.post("/v1/tag", json={"sentences": [["d"], ["e"]]})
        metrics = await client.get("/metrics")
        release.set()
        return full, metrics, await first, await asyncio.gather(*queued)

    full, metrics, first, queued = _run(app, fn)
    assert full.status_code == 503 and full.headers["retry-after"] == "1"
    assert full.json()["error"]["limit"] == 3
    assert "seqtag_queue_sentences 2.0" in metrics.text
    assert first.status_code == 200 and [r.status_code for r in queued] == [200]


def test_a_request_that_waits_too_long_gets_504_and_the_server_stays_ready(models):
    predictor, release = _blocking_predictor()
    app = create_app("fake", ServeConfig(timeout_s=0.3, max_batch_size=1), predictor=predictor)

    async def fn(client):
        slow = await asyncio.gather(*(client.post("/v1/tag", json={"sentences": [["a"]]}) for _ in range(3)))
        queued = app.state.serving["batcher"].queued
        release.set()
        return slow, queued, await client.get("/ready"), await client.post("/v1/tag", json={"sentences": [["b"]]})

    slow, queued, ready, after = _run(app, fn)
    assert [r.status_code for r in slow] == [504] * 3
    assert queued == 0  # the ones that had not reached the model were taken out of the queue
    assert ready.status_code == 200 and after.status_code == 200


def test_without_the_serve_extra_the_command_says_so_in_one_line(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", str(models["onnx"])]) == 1
    err = capsys.readouterr().err
    assert err == "seqtag: error: seqtag serve needs uvicorn: pip install 'seqtag[serve]'\n"


def test_a_missing_model_is_reported_before_serving(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "none.onnx")]) == 1
    assert "no such model file or directory" in capsys.readouterr().err


def test_a_precision_the_model_or_machine_cannot_run_is_refused_before_serving(models, capsys):
    assert main(["serve", str(models["onnx"]), "--precision", "bf16", "--port", str(_free_port())]) == 1
    assert capsys.readouterr().err == (
        "seqtag: error: --precision bf16: this ONNX file runs in the float32 it was exported in; tag with the model "
        "directory for autocast\n"
    )
    assert main(["serve", str(models["directory"]), "--precision", "fp16", "--port", str(_free_port())]) == 1
    assert capsys.readouterr().err == "seqtag: error: --precision fp16 needs CUDA; on cpu use bf16 or fp32\n"


# -- a real server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``seqtag serve MODEL --port P ARGS`` in a subprocess, ready when constructed."""

    def __init__(self, model, *args: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "seqtag", "serve", str(model), "--port", str(self.port), *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.request("GET", "/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not get ready:\n{self.process.stdout.read()}")

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body=None, connection=None) -> tuple[int, bytes]:
        conn = connection or self.connection()
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"content-type": "application/json"})
        response = conn.getresponse()
        out = response.status, response.read()
        if connection is None:
            conn.close()
        return out

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


@pytest.fixture(scope="module")
def server(models):
    s = Server(models["onnx"])
    yield s
    s.stop()


def test_the_server_process_has_no_torch(server):
    maps = Path(f"/proc/{server.process.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system")
    assert "libtorch" not in maps.read_text()


@pytest.mark.parametrize("requests_per_thread", [63, pytest.param(313, marks=pytest.mark.slow)],
                         ids=["2016-requests", "10016-requests"])  # fmt: skip
def test_concurrent_clients_get_the_tags_that_predict_gives(server, models, tmp_path, capsys, requests_per_thread):
    pool = [s.tokens for s in random_sentences(200, max_len=30, seed=5)]
    expected = [o["tags"] for o in _predict_jsonl(models["onnx"], pool, tmp_path, capsys)]
    threads = 32
    wrong, errors = [], []
    answered_before = _answered(server)
    deadline = time.monotonic() + 60 * requests_per_thread / 63

    def client(t: int) -> None:
        conn = server.connection()
        try:
            for i in range(requests_per_thread):
                if time.monotonic() > deadline:
                    errors.append("deadline")
                    return
                k = (t * requests_per_thread + i) % len(pool)
                status, body = server.request("POST", "/v1/tag", {"sentences": [pool[k]]}, conn)
                if status != 200 or json.loads(body)["sentences"][0]["tags"] != expected[k]:
                    wrong.append((k, status, body[:200]))
        except Exception as e:  # reported below
            errors.append(repr(e))
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(90)
    assert not errors and not wrong, (errors[:3], wrong[:3])
    assert _answered(server) - answered_before == threads * requests_per_thread  # each exactly once


def test_two_worker_processes_on_one_port_give_the_tags_that_predict_gives(models, tmp_path, capsys):
    pool = [s.tokens for s in random_sentences(40, max_len=30, seed=6)]
    expected = [o["tags"] for o in _predict_jsonl(models["onnx"], pool, tmp_path, capsys)]
    server = Server(models["onnx"], "--workers", "2", "--threads", "1")
    try:  # a connection for each request: the kernel shares them out between the processes
        got = [json.loads(server.request("POST", "/v1/tag", {"sentences": [s]})[1])["sentences"][0]["tags"] for s in pool]
    finally:
        log = server.stop()
    assert got == expected
    assert server.process.returncode == 0, log


def _answered(server) -> float:
    """The server's count of requests answered 200 (its /metrics)."""
    text = server.request("GET", "/metrics")[1].decode()
    found = re.search(r'seqtag_requests_total\{status="200"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_the_server_stays_ready_after_bad_requests(server):
    conn = server.connection()
    for body in [b"{", b"[]", b'{"sentences": [[]]}', b'{"sentences": [["a"]], "nbest": 99}', b"\xff" * 100]:
        status, _ = server.request("POST", "/v1/tag", body, conn)
        assert status in (400, 422)
    conn.close()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:  # not HTTP at all
        raw.sendall(b"\x00\x01garbage\r\n\r\n")
        raw.recv(1000)
    assert server.request("GET", "/ready")[0] == 200
    assert server.request("POST", "/v1/tag", {"sentences": [["a"]]})[0] == 200


def test_a_body_short_of_its_length_is_answered_408_within_the_timeout_and_the_connection_closed(models):
    server = Server(models["onnx"], "--timeout-s", "1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n" + b'{"sentences": [["a"')  # and then nothing  # fmt: skip
            start, answer = time.monotonic(), b""
            while chunk := raw.recv(65536):  # until the server closes the connection
                answer += chunk
            waited = time.monotonic() - start
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), answer
        assert json.loads(body)["error"]["field"] == "body"
        assert 0.9 < waited < 5
        assert server.request("POST", "/v1/tag", {"sentences": [["a"]]})[0] == 200
    finally:
        log = server.stop()
    assert "Traceback" not in log, log


def test_sigterm_answers_every_request_in_flight_and_exits_0(models):
    server = Server(models["onnx"], "--max-wait-ms", "2000", "--max-batch-size", "64")
    n, answers, sent = 24, [None] * 24, threading.Barrier(25)

    def client(i: int) -> None:
        conn = server.connection()
        conn.request("POST", "/v1/tag", body=json.dumps({"sentences": [["w"] * (i + 1)]}),
                     headers={"content-type": "application/json"})  # fmt: skip
        sent.wait(10)
        response = conn.getresponse()
        answers[i] = (response.status, json.loads(response.read()))
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    sent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # every request queued: the batcher waits 2 s for more
        _, metrics = server.request("GET", "/metrics")
        if f"seqtag_queue_sentences {float(n)}" in metrics.decode():
            break
        time.sleep(0.02)
    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for w in workers:
        w.join(30)
    log = server.stop()
    assert server.process.returncode == 0, log
    assert time.monotonic() - start < 15
    assert [a[0] for a in answers] == [200] * n, answers
    assert [len(a[1]["sentences"][0]["tags"]) for a in answers] == list(range(1, n + 1))
    with pytest.raises(OSError):
        server.request("GET", "/health")


@pytest.mark.parametrize("model, args", [("onnx", ()), ("directory", ()), ("onnx", ("--workers", "2"))],
                         ids=["onnx", "directory", "onnx-2-workers"])  # fmt: skip
def test_sigterm_sent_again_and_again_during_the_exit_still_ends_with_status_0(models, model, args):
    # a process manager may repeat SIGTERM; one landing while the interpreter finalizes used to
    # kill the process (-15) after a graceful shutdown
    server = Server(models[model], *args)
    deadline = time.monotonic() + 30
    while server.process.poll() is None and time.monotonic() < deadline:
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.001)
    log = server.stop()
    assert server.process.returncode == 0, log


# -- int8 for CPU serving ---------------------------------------------------------------------


def test_int8_export_is_checked_on_dev_data_and_refused_beyond_the_bound(models, tmp_path):
    from seqtag.errors import SeqtagError
    from seqtag.serving.onnx_export import to_onnx_int8
    from seqtag.serving.onnx_runner import OnnxTagger

    dev = bio_sentences(60, seed=9)
    path, report = to_onnx_int8(models["directory"], tmp_path / "int8.onnx", dev=dev, max_drop=100.0)
    assert report["int8_bytes"] < report["fp32_bytes"] and report["dev_tokens"] == sum(len(s) for s in dev)
    assert 0.0 <= report["int8_accuracy"] <= 1.0
    assert OnnxTagger(path).tags == list(models["tagger"].vocabs.tags.itos)
    with pytest.raises(SeqtagError, match=r"^int8 loses .* points of dev accuracy"):
        to_onnx_int8(models["directory"], tmp_path / "refused.onnx", dev=dev, max_drop=-100.0)
    assert not (tmp_path / "refused.onnx").exists()


def test_export_quantize_int8_on_the_command_line(models, tmp_path, capsys):
    out = tmp_path / "tagger.int8.onnx"
    assert main(["export", str(models["directory"]), "--format", "onnx", "--quantize", "int8", "--output", str(out)]) == 0
    assert "int8 accuracy not checked" in capsys.readouterr().err  # a model saved from Python names no dev file
    assert out.stat().st_size < models["onnx"].stat().st_size
    assert main(["export", str(models["directory"]), "--quantize", "int8", "--output", str(tmp_path / "t.pt")]) == 1
    assert capsys.readouterr().err == "seqtag: error: --quantize int8 is for --format onnx\n"


# -- the commands of docs/serving.md ----------------------------------------------------------


def test_the_curl_commands_of_the_docs_run(server):
    import re
    import shlex
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("no curl")
    page = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 5
    for command in commands:
        argv = shlex.split(command.replace("localhost:8000", f"127.0.0.1:{server.port}"))
        out = subprocess.run([*argv, "--fail-with-body"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (command, out.stdout, out.stderr)
        if command.endswith("/metrics"):
            assert "seqtag_requests_total" in out.stdout
        else:
            json.loads(out.stdout)
