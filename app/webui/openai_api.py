"""An OpenAI-compatible API on the web UI's port, for front ends and libraries that speak
OpenAI's chat API (Open WebUI, LibreChat, AnythingLLM, the `openai` client, LangChain).

- `GET /v1/models`: one model per corpus, its id the corpus name.
- `POST /v1/chat/completions`: `model` is a corpus (or `corpus:mode`; or an extra `mode`
  field); the answer is to the last user message, from the corpus's memory (earlier turns
  are not read: the corpus is the context). `stream: true` sends `chat.completion.chunk`
  server-sent events ending with `data: [DONE]`. The sources are an extra `sources` field of
  the message (of the last content delta when streaming) and, for clients that only show
  text, a short list after the answer.

Same login as the UI: with one set, `Authorization: Bearer PASSWORD` (or `USER:PASSWORD`),
checked and slowed down like the login form. Same question cap (the service's). Errors are
OpenAI error objects: 401 `invalid_api_key`, 404 `model_not_found`, 400 for bad requests
and questions the service refuses, 413 for a body over `MAX_BODY_BYTES`.
"""
from __future__ import annotations

import inspect
import itertools
import json
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Iterator

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from app.corpus.errors import CorpusError
from app.service.asking import NOT_FOUND
from app.service.corpus_service import CorpusService
from app.webui.auth import LoginThrottle
from app.webui.formatting import PublicView, source_line

log = logging.getLogger("rmtqa.openai_api")
ASK_MODES = ("fast", "reread", "deep")
MAX_BODY_BYTES = 1024 * 1024  # a whole conversation is sent each time; only its last question is read
MAX_NEW_TOKENS = 256
SOURCES_SHOWN = 3


class ApiError(Exception):
    """A request refused with an OpenAI error object."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code, self.param, self.kind = status, code, param, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class OpenAiApi:
    """The routes over one corpus service; `login` None means no login (as for the UI)."""

    def __init__(self, service: CorpusService, public: PublicView, login: LoginThrottle | None):
        self.service, self.public, self.login = service, public, login
        self.takes_mode = "mode" in inspect.signature(service.ask_stream).parameters

    def routes(self) -> list[APIRoute]:
        return [APIRoute("/v1/models", self.models, methods=["GET"]),
                APIRoute("/v1/chat/completions", self.chat_completions, methods=["POST"])]

    async def models(self, request: Request):
        try:
            await self._authorise(request)
            corpora = await run_in_threadpool(self.service.list_corpora)
        except ApiError as error:
            return error.response()
        return {"object": "list", "data": [
            {"id": corpus["name"], "object": "model", "created": _timestamp(corpus.get("updated")), "owned_by": "rmtqa",
             "rmtqa": {key: corpus.get(key) for key in ("state", "documents", "tokens", "segments", "complete")}}
            for corpus in corpora
        ]}

    async def chat_completions(self, request: Request):
        try:
            await self._authorise(request)
            body = await _json_body(request)
            corpus, mode, model = await run_in_threadpool(self._corpus_and_mode, body)
            options = self._ask_options(body, mode)
            question = _last_user_message(body.get("messages"))
            if body.get("stream"):
                return await self._stream(corpus, model, question, options)
            result = await run_in_threadpool(self._ask, corpus, question, options)
        except ApiError as error:
            return error.response()
        sources = self.public.json(result["sources"], api=True)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": result["answer"] + self._sources_text(result["sources"]), "sources": sources,
                **_judgement(result)}}],
        }

    async def _authorise(self, request: Request) -> None:
        if self.login is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "this server needs a login: send `Authorization: Bearer PASSWORD`", code="invalid_api_key")
        if not await self.login.check_token(token.strip()):
            raise ApiError(401, "wrong API key (the login's password)", code="invalid_api_key")

    def _corpus_and_mode(self, body: dict) -> tuple[str, str | None, str]:
        """(corpus, mode or None, the model id as sent) of a request; 404 for no such corpus."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "`model` must be a corpus name (GET /v1/models lists them)", param="model")
        corpus, _, suffix = model.rpartition(":")
        corpus, mode = (corpus, suffix) if corpus and suffix in ASK_MODES else (model, None)
        if body.get("mode") is not None:
            mode = body["mode"]
        if mode is not None and mode not in ASK_MODES:
            raise ApiError(400, f"unknown mode {mode!r}: use one of {', '.join(ASK_MODES)}", param="mode")
        if corpus not in {summary["name"] for summary in self.service.list_corpora()}:
            raise ApiError(404, f"The model '{model}' does not exist: no corpus named {corpus} (GET /v1/models lists them)",
                           code="model_not_found", param="model")
        return corpus, mode, model

    def _ask_options(self, body: dict, mode: str | None) -> dict:
        options: dict[str, Any] = {}
        if mode is not None and self.takes_mode:
            options["mode"] = mode
        elif mode not in (None, "fast"):
            raise ApiError(400, f"mode {mode!r} is not available on this server yet: only fast", param="mode")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None:
            options["max_new_tokens"] = min(_number(limit, "max_tokens", int, 1), MAX_NEW_TOKENS)
        if body.get("temperature") is not None:
            options["temperature"] = min(_number(body["temperature"], "temperature", float, 0), 2.0)
        if body.get("top_p") is not None:
            options["top_p"] = min(_number(body["top_p"], "top_p", float, 0), 1.0) or 1.0
        return options

    def _ask(self, corpus: str, question: str, options: dict) -> dict:
        try:
            return self.service.ask(corpus, question, **options)
        except CorpusError as error:
            raise ApiError(400, self.public.text(str(error))) from None

    async def _stream(self, corpus: str, model: str, question: str, options: dict) -> StreamingResponse:
        """Server-sent chunks; a question the service refuses is an error response, not a stream."""
        stop = threading.Event()
        events = self.service.ask_stream(corpus, question, cancel=stop, **options)
        try:
            first = await run_in_threadpool(next, events)
        except CorpusError as error:
            raise ApiError(400, self.public.text(str(error))) from None
        return StreamingResponse(self._chunks(first, events, stop, model), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _chunks(self, first: dict, events: Iterator[dict], stop: threading.Event, model: str) -> Iterator[str]:
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> str:
            data = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            started = False
            for event in itertools.chain([first], events):
                if event["type"] == "token":
                    text = event["text"] if started else event["text"].lstrip()
                    started = started or bool(text)
                    if text:
                        yield chunk({"content": text})
                else:
                    sources = event["sources"]
                    note = f"\n\n({NOT_FOUND}: the answer above was a guess.)" if event.get("abstained") and started else ""
                    yield chunk({"content": note + self._sources_text(sources), "sources": self.public.json(sources, api=True),
                                 **_judgement(event)})
            yield chunk({}, "stop")
        except Exception as error:  # noqa: BLE001 - the stream has begun: say so in it, then end it
            log.exception("chat completion stream failed")
            message = self.public.text(str(error)) if isinstance(error, CorpusError) else "the answer failed part-way"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'param': None, 'code': None}})}\n\n"
        finally:
            stop.set()  # a client that went away stops the generation
        yield "data: [DONE]\n\n"

    def _sources_text(self, sources: list[dict]) -> str:
        """The sources as a short list after the answer, for clients that show only text."""
        if not sources:
            return ""
        lines = [f"{number}. {source_line(source, self.public.name)}" for number, source in enumerate(sources[:SOURCES_SHOWN], 1)]
        return "\n\nSources:\n" + "\n".join(lines)


def openai_api_routes(service: CorpusService, public: PublicView, login: LoginThrottle | None) -> list[APIRoute]:
    """`/v1/models` and `/v1/chat/completions`, for the web UI's FastAPI app."""
    return OpenAiApi(service, public, login).routes()


async def _json_body(request: Request) -> dict:
    """The request's JSON object, read up to `MAX_BODY_BYTES`."""
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body over {MAX_BODY_BYTES // 1024} KiB")
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES // 1024} KiB")
    try:
        body = json.loads(data)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _last_user_message(messages: Any) -> str:
    """The text of the last user message (string content, or its text parts)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list", param="messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
            if isinstance(content, str) and content.strip():
                return content.strip()
            raise ApiError(400, "the last user message has no text", param="messages")
    raise ApiError(400, "`messages` has no user message to answer", param="messages")


def _number(value: Any, name: str, kind: type, lowest: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lowest or (kind is int and value != int(value)):
        raise ApiError(400, f"`{name}` must be a number of at least {lowest}", param=name)
    return kind(value)


def _timestamp(text: str | None) -> int:
    try:
        return int(datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%S%z").timestamp())
    except ValueError:
        return 0


def _judgement(result: dict) -> dict:
    """The answer's confidence fields, as extra fields of the message (null where not judged)."""
    return {key: result.get(key) for key in ("confidence", "abstained", "mode")}
