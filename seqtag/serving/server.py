"""``seqtag serve``: a model of any format behind a versioned JSON API over HTTP, with dynamic
batching, limits, health checks and Prometheus metrics.

A request goes: body read with a size cap ► :func:`parse_request` (every check, before
anything is queued) ► the :class:`Batcher`'s bounded queue ► a batch of whole requests, cut
at ``max_batch_size`` sentences and the padded-token cap by :func:`~seqtag.data.encoding.plan_batches`
or run when the oldest request has waited ``max_wait_ms`` ► :func:`~seqtag.serving.predictor.tag_sentences`
on the one inference thread (the event loop keeps reading requests meanwhile) ► each request's
results, written as ``seqtag predict --output-format jsonl`` writes them
(:class:`~seqtag.data.formats.Writer`).

Endpoints (``API_VERSION`` 1):

- ``POST /v1/tag``: ``{"sentences": [["The", "dog"], ...]}`` or ``{"text": "The dog .\\nIt slept ."}``
  (one sentence per line, read by ``seqtag predict``'s text reader), with ``"confidence": true``
  and ``"nbest": K``; answers ``{"sentences": [{"tokens": ..., "tags": ...}, ...]}``.
- ``GET /v1/model``: tags, format, versions, limits. ``GET /health``: the process is up.
  ``GET /ready``: the model is loaded and the batcher accepts work. ``GET /metrics``: Prometheus.

Starlette, uvicorn and prometheus_client (the ``serve`` extra) are imported inside the functions
that need them, and torch only by the model formats that need it: an ONNX model is served by
:class:`~seqtag.serving.onnx_runner.OnnxTagger` in a process without torch. ``seqtag serve``
(:mod:`seqtag.cli.serve`) starts ``python -m seqtag.serving.server MODEL CONFIG_JSON`` in its
place (``exec``: the same process id), so that the command line's own imports (torch among
them) stay out of the serving process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import platform
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from seqtag.config import PredictConfig, ServeConfig
from seqtag.data.encoding import lone_surrogate, plan_batches
from seqtag.data.formats import Item, Tagged, Writer, read_items
from seqtag.errors import SeqtagError
from seqtag.serving.predictor import (
    KINDS,
    Predictor,
    load_predictor,
    model_kind,
    set_torch_threads,
    tag_sentences,
)

API_VERSION = 1
REQUEST_KEYS = ("sentences", "text", "confidence", "nbest")
ENVIRONMENT = "SEQTAG_SERVE"
"""The environment variable that hands ``MODEL`` and the config to each ``--workers`` process."""
RETRY_AFTER_S = 1
log = logging.getLogger("seqtag.serving.server")


def require_extra() -> None:
    """Raise a one-line :class:`SeqtagError` unless the ``serve`` extra is installed."""
    for name in ("starlette", "uvicorn", "prometheus_client"):
        try:
            __import__(name)
        except ImportError:
            raise SeqtagError(f"seqtag serve needs {name}: pip install 'seqtag[serve]'") from None


# -- requests --------------------------------------------------------------------------------


class RequestError(Exception):
    """A request refused before it is queued: an HTTP status and a JSON error body that names
    the field and, for a limit, the limit."""

    def __init__(self, status: int, message: str, field: str | None = None, limit: int | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.field, self.limit = status, message, field, limit
        self.headers = headers  # of the answer

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.limit is not None:
            error["limit"] = self.limit
        return {"error": error}


@dataclass
class TagRequest:
    """A checked ``POST /v1/tag`` body: the sentences as :class:`Item` s and what to add."""

    items: list[Item]
    confidence: bool = False
    nbest: int = 0


@dataclass(frozen=True)
class Limits:
    """What :func:`parse_request` checks a body against."""

    max_sentences: int
    max_tokens: int
    max_nbest: int
    confidence: bool = True
    nbest: bool = True

    @classmethod
    def of(cls, config: ServeConfig, predictor: Predictor) -> Limits:
        """``config``'s limits, with the sentence length and methods of ``predictor``."""
        max_tokens = min(config.max_tokens, predictor.max_length or config.max_tokens)
        methods = predictor.methods
        return cls(config.max_sentences, max_tokens, config.max_nbest,
                   methods.get("predict_with_confidence") is not None, methods.get("nbest") is not None)  # fmt: skip


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of a request (``json.loads``'s ``object_pairs_hook``), refused when a field
    comes twice, which ``json.loads`` would answer with the last one."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RequestError(422, f"field {key!r} given twice", field=key)
        obj[key] = value
    return obj


def parse_request(body: bytes, limits: Limits) -> TagRequest:
    """Check a ``POST /v1/tag`` body and return its sentences and options.

    Raises:
        RequestError: 400 for a body that is not JSON, 413 for more than ``max_sentences``
            sentences, 422 for anything else (a wrong type, a field given twice, an empty sentence,
            a sentence longer than ``max_tokens``, ``nbest`` out of range, an option the model
            cannot give).

    >>> parse_request(b'{"text": "The dog .\\\\n\\\\nIt slept"}', Limits(8, 8, 4)).items[1].tokens
    ['It', 'slept']
    >>> parse_request(b'{"sentences": [[]]}', Limits(8, 8, 4))
    Traceback (most recent call last):
    ...
    seqtag.serving.server.RequestError: sentences[0]: expected at least one token
    """
    try:  # UTF-8 (a byte order mark skipped): json.loads would also read UTF-16 and UTF-32 bytes
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_object)
    except (ValueError, RecursionError) as e:  # RecursionError: [[[[...
        raise RequestError(400, f"the body is not JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise RequestError(422, f"expected a JSON object, got {_type_name(obj)}")
    for key in obj:
        if key not in REQUEST_KEYS:
            raise RequestError(422, f"unknown field {key!r}: expected {', '.join(REQUEST_KEYS)}", field=key)
    if ("sentences" in obj) == ("text" in obj):
        raise RequestError(422, 'expected "sentences" (lists of tokens) or "text" (one sentence per line), '
                           "one of them", field="sentences")  # fmt: skip
    confidence = obj.get("confidence", False)
    if not isinstance(confidence, bool):
        raise RequestError(422, f"expected true or false, got {_type_name(confidence)}", field="confidence")
    nbest = obj.get("nbest", 0)
    if isinstance(nbest, bool) or not isinstance(nbest, int):
        raise RequestError(422, f"expected an integer, got {_type_name(nbest)}", field="nbest")
    if not 0 <= nbest <= limits.max_nbest:
        raise RequestError(422, f"expected 0 <= nbest <= {limits.max_nbest}, got {nbest}", field="nbest",
                           limit=limits.max_nbest)  # fmt: skip
    if confidence and not limits.confidence:
        raise RequestError(422, "this model format gives no confidences", field="confidence")
    if nbest and not limits.nbest:
        raise RequestError(422, "this model format gives no n-best lists", field="nbest")
    items = _text_items(obj["text"], limits) if "text" in obj else _sentence_items(obj["sentences"], limits)
    for item in items:
        if len(item.tokens) > limits.max_tokens:
            where = f"text line {item.line}" if "text" in obj else f"sentences[{item.line - 1}]"
            raise RequestError(422, f"{where}: {len(item.tokens)} tokens, more than the limit of {limits.max_tokens}",
                               field="text" if "text" in obj else f"sentences[{item.line - 1}]",
                               limit=limits.max_tokens)  # fmt: skip
    return TagRequest(items, confidence, nbest)


def _too_many(limits: Limits, field: str) -> RequestError:
    return RequestError(413, f"more than {limits.max_sentences} sentences in one request", field=field,
                        limit=limits.max_sentences)  # fmt: skip


def _text_items(text: Any, limits: Limits) -> list[Item]:
    """The sentences of ``text`` as ``seqtag predict`` reads a text file: one per line."""
    if not isinstance(text, str):
        raise RequestError(422, f"expected a string, got {_type_name(text)}", field="text")
    # surrogatepass: a lone surrogate (valid JSON, "\ud800") becomes bytes that are not UTF-8,
    # which the reader refuses with the line
    stream = io.BytesIO(text.encode("utf-8", "surrogatepass"))
    items = []
    try:
        for item in read_items(stream, "text", "text"):
            if len(items) == limits.max_sentences:
                raise _too_many(limits, "text")
            items.append(item)
    except SeqtagError as e:
        raise RequestError(422, str(e), field="text") from None
    return items


def _sentence_items(sentences: Any, limits: Limits) -> list[Item]:
    if not isinstance(sentences, list):
        raise RequestError(422, f"expected a list of sentences, got {_type_name(sentences)}", field="sentences")
    if len(sentences) > limits.max_sentences:
        raise _too_many(limits, "sentences")
    items = []
    for i, tokens in enumerate(sentences):
        where = f"sentences[{i}]"
        if not isinstance(tokens, list):
            raise RequestError(422, f"{where}: expected a list of token strings, got {_type_name(tokens)}", field=where)
        if not tokens:
            raise RequestError(422, f"{where}: expected at least one token", field=where)
        for j, token in enumerate(tokens):
            if not isinstance(token, str):
                raise RequestError(422, f"{where}[{j}]: expected a string, got {_type_name(token)}",
                                   field=f"{where}[{j}]")  # fmt: skip
        j = lone_surrogate(tokens)
        if j is not None:
            raise RequestError(422, f"{where}[{j}]: a lone surrogate is not text", field=f"{where}[{j}]")
        items.append(Item(tokens, i + 1))
    return items


# -- the batcher -----------------------------------------------------------------------------


class QueueFull(Exception):
    """The queue holds ``max_queue`` sentences: answered 503 with ``Retry-After``."""


class RequestTimeout(Exception):
    """The request waited ``timeout_s``: answered 504."""


@dataclass(eq=False)
class Job:
    """One request's sentences in the queue, and the future its handler awaits."""

    sentences: list[list[str]]
    confidence: bool
    nbest: int
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    overhead: float = 0.0
    """The request's share of the batcher's time outside the model call (seconds)."""


class Batcher:
    """Dynamic batching: the requests' sentences join one queue; a batch of whole requests in
    arrival order (with the same options) runs when it is full — ``max_batch_size`` sentences,
    or one more request would need a second batch of the plan of
    :func:`~seqtag.data.encoding.plan_batches` under the padded-token cap — or when its oldest request
    has waited ``max_wait_ms``. The model runs on one thread off the event loop; a batch that
    raises is run again request by request, so that only the request at fault fails.

    Args:
        predictor: the model (``batch_size`` of its calls: ``config.inference_batch_size``).
        config: the batch and queue limits.
    """

    def __init__(self, predictor: Predictor, config: ServeConfig, on_batch=None) -> None:
        self.predictor = predictor
        self.max_batch_size = config.max_batch_size
        self.max_tokens = config.batch_tokens()
        self.max_wait = config.max_wait_ms / 1000
        self.max_queue = config.max_queue
        self.on_batch = on_batch  # called (sentences, tokens, model seconds) after each batch
        self.queued = 0  # sentences in the queue
        self.running = 0  # sentences in the model now
        self._queue: deque[Job] = deque()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="seqtag-inference")
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seqtag-batcher")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def submit(self, sentences: list[list[str]], confidence: bool = False, nbest: int = 0) -> Job:
        """Queue a request's sentences (at least one).

        Raises:
            QueueFull: the queue would hold more than ``max_queue`` sentences.
        """
        if self.queued + len(sentences) > self.max_queue:
            raise QueueFull
        job = Job(sentences, confidence, nbest, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self.queued += len(sentences)
        self._wake.set()
        return job

    def withdraw(self, job: Job) -> None:
        """Take a job out of the queue (its request timed out); no-op once it is running."""
        try:
            self._queue.remove(job)
        except ValueError:
            return
        self.queued -= len(job.sentences)

    def _next_batch(self) -> tuple[list[Job], bool]:
        """The jobs of the next batch, and whether it is full (then it runs without waiting)."""
        first = self._queue[0]
        key = (first.confidence, first.nbest)
        jobs: list[Job] = []
        lengths: list[int] = []
        for job in self._queue:
            if (job.confidence, job.nbest) != key:
                continue
            more = lengths + [len(s) for s in job.sentences]
            if jobs and (len(more) > self.max_batch_size or len(plan_batches(more, self.max_batch_size, self.max_tokens)) > 1):
                return jobs, True
            jobs.append(job)
            lengths = more
            if len(lengths) >= self.max_batch_size:
                return jobs, True
        return jobs, False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = time.perf_counter()
            jobs, full = self._next_batch()
            wait = jobs[0].queued + self.max_wait - started
            if not full and wait > 0:
                self._wake.clear()  # woken by the next request, to see whether the batch is full
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            for job in jobs:
                self._queue.remove(job)
            n = sum(len(job.sentences) for job in jobs)
            self.queued -= n
            self.running = n
            planned = time.perf_counter() - started
            try:
                results, model_s, thread_s = await loop.run_in_executor(self._executor, self._infer, jobs)
            except Exception as e:  # not the model's (_infer catches those): answer 500, keep batching
                log.error("the batcher failed on a batch of %d requests", len(jobs), exc_info=True)
                results, model_s, thread_s = [e] * len(jobs), 0.0, 0.0
            finally:
                self.running = 0
            delivered = time.perf_counter()
            share = (planned + thread_s - model_s) / len(jobs)
            for job, result in zip(jobs, results):
                job.overhead = share
                if job.future.done():  # timed out meanwhile
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            if self.on_batch is not None:
                tokens = sum(len(s) for job in jobs for s in job.sentences)
                self.on_batch(n, tokens, model_s)
            for job in jobs:
                job.overhead += (time.perf_counter() - delivered) / len(jobs)

    def _infer(self, jobs: list[Job]) -> tuple[list, float, float]:
        """On the inference thread: ``(per job its results or its exception, seconds in the
        model, seconds on the thread)``."""
        start = time.perf_counter()
        sentences = [s for job in jobs for s in job.sentences]
        model_s = 0.0
        try:
            t0 = time.perf_counter()
            tagged = tag_sentences(self.predictor, sentences, jobs[0].confidence, jobs[0].nbest)
            model_s += time.perf_counter() - t0
            results: list = []
            offset = 0
            for job in jobs:
                results.append(tagged[offset : offset + len(job.sentences)])
                offset += len(job.sentences)
        except Exception as e:
            model_s += time.perf_counter() - t0
            if len(jobs) == 1:
                log.error("inference failed for a request of %d sentences", len(sentences), exc_info=True)
                results = [e]
            else:  # run them one by one: only the request at fault fails
                log.warning("a batch of %d requests failed (%s); running them one by one", len(jobs), e)
                results = []
                for job in jobs:
                    t0 = time.perf_counter()
                    try:
                        results.append(tag_sentences(self.predictor, job.sentences, job.confidence, job.nbest))
                    except Exception as e1:
                        log.error("inference failed for a request of %d sentences", len(job.sentences), exc_info=True)
                        results.append(e1)
                    model_s += time.perf_counter() - t0
        return results, model_s, time.perf_counter() - start

    async def stop(self, timeout: float) -> None:
        """Answer what is queued (for at most ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        while (self._queue or self.running) and self.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(RequestTimeout())
        self._queue.clear()
        self._executor.shutdown(wait=False)


# -- metrics ---------------------------------------------------------------------------------


class Metrics:
    """The Prometheus metrics of one app, in their own ``CollectorRegistry``."""

    def __init__(self, batcher_state) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        fine = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
        latency = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        self.requests = Counter("seqtag_requests", "POST /v1/tag requests answered, by HTTP status", ["status"],
                                registry=r)  # fmt: skip
        self.latency = Histogram("seqtag_request_seconds", "POST /v1/tag: seconds from reading the request to "
                                 "the answer", buckets=latency, registry=r)  # fmt: skip
        self.server = Histogram("seqtag_server_seconds", "POST /v1/tag: seconds in the server outside queueing and "
                                "the model call (reading, checking, batching, writing the answer)", buckets=fine,
                                registry=r)  # fmt: skip
        self.inference = Histogram("seqtag_inference_seconds", "seconds of one batch's model call", buckets=latency,
                                   registry=r)  # fmt: skip
        self.batch = Histogram("seqtag_batch_sentences", "sentences per batch",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)  # fmt: skip
        self.sentences = Counter("seqtag_sentences_tagged", "sentences tagged", registry=r)
        self.tokens = Counter("seqtag_tokens_tagged", "tokens tagged", registry=r)
        queue = Gauge("seqtag_queue_sentences", "sentences waiting for the model", registry=r)
        queue.set_function(lambda: batcher_state().queued if batcher_state() else 0)

    def on_batch(self, sentences: int, tokens: int, model_s: float) -> None:
        self.batch.observe(sentences)
        self.sentences.inc(sentences)
        self.tokens.inc(tokens)
        self.inference.observe(model_s)


# -- the app ---------------------------------------------------------------------------------


def _backend_tags(predictor: Predictor) -> list[str]:
    """The model's tag names in id order, from the object behind its ``predict``."""
    method = predictor.methods.get("predict")
    backend = getattr(getattr(method, "func", method), "__self__", method)
    tags = getattr(backend, "tags", None)
    if tags is None and hasattr(backend, "vocabs"):  # an eager Tagger
        tags = backend.vocabs.tags.itos
    return [str(t) for t in tags] if tags is not None else []


def _versions(kind: str) -> dict[str, str]:
    from seqtag import __version__

    versions = {"seqtag": __version__, "python": platform.python_version()}
    if kind == "onnx":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    return versions


def load(model: str | os.PathLike, config: ServeConfig) -> Predictor:
    """The model behind the server, loaded and run once (so the first request pays no set-up).

    Raises:
        SeqtagError: no such model, an unreadable one, a device the format cannot use.
    """
    predict_config = PredictConfig(batch_size=config.inference_batch_size, device=config.device, threads=config.threads,
                                   workers=config.workers, precision=config.precision)  # fmt: skip
    # a long-running process meets many batch shapes: the bound of seqtag predict (cli.predict.run)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    if model_kind(model) != "onnx":
        set_torch_threads(predict_config.threads_per_worker())
    predictor = load_predictor(model, predict_config)
    tag_sentences(predictor, [["warm", "up", "."]])
    return predictor


def create_app(model: str | os.PathLike, config: ServeConfig | None = None, predictor: Predictor | None = None):
    """The Starlette app that serves ``model`` (loaded when the app starts, unless ``predictor``
    is given: then ``model`` is only its name in ``/v1/model``).

    Raises:
        SeqtagError: the ``serve`` extra is not installed.
    """
    require_extra()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    config = config or ServeConfig()
    state: dict[str, Any] = {"predictor": predictor, "batcher": None, "limits": None, "ready": False}
    metrics = Metrics(lambda: state["batcher"])
    writer = Writer("jsonl", "jsonl")

    def error(e: RequestError, headers: dict[str, str] | None = None) -> Response:
        metrics.requests.labels(str(e.status)).inc()
        if e.status >= 500:
            log.error("POST /v1/tag: %d %s", e.status, e.message)
        return JSONResponse(e.body(), status_code=e.status, headers={**(e.headers or {}), **(headers or {})})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and "transfer-encoding" in request.headers:  # how requests are smuggled
            raise RequestError(400, "both Content-Length and Transfer-Encoding: send one of them", field="body",
                               headers={"Connection": "close"})  # fmt: skip
        too_large = RequestError(413, f"the body is larger than {config.max_body_bytes} bytes", field="body",
                                 limit=config.max_body_bytes)  # fmt: skip
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            raise too_large
        chunks, size = [], 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_body_bytes:
                    raise too_large
                chunks.append(chunk)

        try:  # the body's arrival counts in the request's time: a client sending less than its
            # Content-Length, or sending it slowly, does not hold the connection for ever
            await asyncio.wait_for(receive(), config.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(408, f"the body did not arrive within {config.timeout_s:g} s", field="body",
                               limit=int(config.timeout_s), headers={"Connection": "close"}) from None  # fmt: skip
        return b"".join(chunks)

    async def tag(request: Request) -> Response:
        start = time.perf_counter()
        batcher: Batcher | None = state["batcher"]
        if batcher is None or not state["ready"]:
            return error(RequestError(503, "not ready"), {"Retry-After": str(RETRY_AFTER_S)})
        try:
            parsed = parse_request(await read_body(request), state["limits"])
            sentences = [item.tokens for item in parsed.items]
            job = batcher.submit(sentences, parsed.confidence, parsed.nbest) if sentences else None
        except RequestError as e:
            return error(e)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it
        except QueueFull:
            return error(RequestError(503, f"the queue holds {batcher.queued} sentences (limit {batcher.max_queue}); "
                                      "retry later", limit=batcher.max_queue), {"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        queued = time.perf_counter()
        if job is None:
            tagged: list[Tagged] = []
        else:
            remaining = config.timeout_s - (queued - start)
            timer = asyncio.get_running_loop().call_later(remaining, expire, batcher, job)
            try:
                tagged = await job.future
            except RequestTimeout:
                return error(RequestError(504, f"no answer within {config.timeout_s:g} s", limit=int(config.timeout_s)))
            except Exception as e:
                return error(RequestError(500, f"inference failed: {type(e).__name__}: {str(e)[:300]}"))
            finally:
                timer.cancel()
        answered = time.perf_counter()
        lines = [writer(item, result)[:-1] for item, result in zip(parsed.items, tagged)]
        response = Response('{"sentences": [' + ", ".join(lines) + "]}", media_type="application/json")
        done = time.perf_counter()
        metrics.requests.labels("200").inc()
        metrics.latency.observe(done - start)
        metrics.server.observe((queued - start) + (done - answered) + (job.overhead if job else 0.0))
        if config.log_requests:
            log.info("POST /v1/tag 200 %d sentences %.1f ms", len(lines), 1000 * (done - start))
        return response

    def expire(batcher: Batcher, job: Job) -> None:
        if not job.future.done():
            batcher.withdraw(job)
            job.future.set_exception(RequestTimeout())

    async def model_info(request: Request) -> Response:
        p: Predictor = state["predictor"]
        if p is None:
            return JSONResponse({"error": {"status": 503, "message": "not ready"}}, status_code=503)
        limits: Limits = state["limits"]
        kind = next((k for k, v in KINDS.items() if v == p.kind), p.kind)
        return JSONResponse({
            "api_version": API_VERSION,
            "model": {"path": str(model), "format": kind, "tags": _backend_tags(p), "max_length": p.max_length},
            "capabilities": {"confidence": limits.confidence, "nbest": limits.nbest},
            "limits": {"max_body_bytes": config.max_body_bytes, "max_sentences": limits.max_sentences,
                       "max_tokens": limits.max_tokens, "max_nbest": limits.max_nbest, "timeout_s": config.timeout_s},
            "batching": {"max_batch_size": config.max_batch_size, "max_batch_tokens": config.batch_tokens(),
                         "inference_batch_size": config.inference_batch_size,
                         "max_wait_ms": config.max_wait_ms, "max_queue": config.max_queue},
            "versions": _versions(kind),
        })  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        batcher = state["batcher"]
        if state["ready"] and batcher is not None and batcher.alive:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_routed(request: Request, exc: HTTPException) -> Response:
        """A path without an endpoint (404), a method the endpoint lacks (405, with ``Allow``): the
        API's JSON error, as every refusal."""
        where = f"{request.method} {request.url.path[:200]!r}"
        if exc.status_code == 405:
            message = f"{where}: this endpoint takes {(exc.headers or {}).get('Allow', 'other methods')}"
        elif exc.status_code == 404:
            message = f"{where}: no such endpoint; expected one of {', '.join(r.path for r in routes)}"
        else:
            message = f"{where}: {exc.detail}"
        return JSONResponse(RequestError(exc.status_code, message).body(), status_code=exc.status_code,
                            headers=exc.headers)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app):
        if state["predictor"] is None:
            state["predictor"] = load(model, config)
        batcher = Batcher(state["predictor"], config, metrics.on_batch)
        batcher.start()
        state.update(batcher=batcher, limits=Limits.of(config, state["predictor"]), ready=True)
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop(config.shutdown_timeout_s)

    routes = [
        Route("/v1/tag", tag, methods=["POST"]),
        Route("/v1/model", model_info, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_routed})
    app.state.serving = state  # the predictor, the batcher and readiness, for tests and embedding
    app.state.metrics = metrics
    return app


def app_from_environment():
    """The app of a ``--workers`` process: model and config from :data:`ENVIRONMENT`."""
    spec = json.loads(os.environ[ENVIRONMENT])
    _configure_logging()
    return create_app(spec["model"], ServeConfig.from_dict(spec["config"]))


# -- running ---------------------------------------------------------------------------------


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _ignore_sigterm() -> None:
    """Ignore SIGTERM from here on, so that a graceful shutdown ends with status 0.

    With one process, called before uvicorn serves: uvicorn handles SIGTERM while it serves, then
    restores the handler it found and re-raises the signal it handled. With ``workers > 1``,
    called once uvicorn's supervisor has returned. Ignored (not a Python handler, which the
    interpreter resets to the default while it finalizes), neither that signal nor a second one
    sent during the exit kills the process.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def serve(model: str | os.PathLike, config: ServeConfig) -> None:
    """Serve ``model`` until SIGTERM or Ctrl-C: on SIGTERM, stop accepting connections, answer
    the requests in flight (for at most ``shutdown_timeout_s``) and return.

    Raises:
        SeqtagError: the extra is missing, or the model cannot be loaded.
    """
    require_extra()
    import uvicorn

    _configure_logging()
    kind = model_kind(model)
    options = dict(host=config.host, port=config.port, timeout_graceful_shutdown=config.shutdown_timeout_s,
                   access_log=False, lifespan="on", log_level="info")  # fmt: skip
    if config.workers == 1:
        app = create_app(model, config, load(model, config))

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                app.state.serving["ready"] = False  # /ready says 503 while the requests in flight finish
                super().handle_exit(sig, frame)

        log.info("serving %s (%s) on http://%s:%d", model, KINDS[kind], config.host, config.port)
        _ignore_sigterm()
        Server(uvicorn.Config(app, **options)).run()
    else:
        os.environ[ENVIRONMENT] = json.dumps({"model": str(model), "config": config.to_dict()})
        log.info("serving %s (%s) on http://%s:%d with %d processes", model, KINDS[kind], config.host, config.port,
                 config.workers)  # fmt: skip
        uvicorn.run(f"{__name__ if __name__ != '__main__' else 'seqtag.serving.server'}:app_from_environment", factory=True,
                    workers=config.workers, **options)  # fmt: skip
        _ignore_sigterm()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seqtag.serving.server MODEL CONFIG_JSON``: what ``seqtag serve`` runs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 2:
        print("usage: python -m seqtag.serving.server MODEL CONFIG_JSON (or: seqtag serve MODEL [options])", file=sys.stderr)
        return 2
    try:
        serve(argv[0], ServeConfig.from_dict(json.loads(argv[1])))
    except (SeqtagError, ValueError) as e:
        print(f"seqtag: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
