"""The OpenAI-compatible API on the web UI's port, through the official `openai` client."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest

from app.webui.openai_api import OpenAiApi
from tests.corpus_helpers import book_lines, write_text
from tests.webui_helpers import free_port, running_server

QUESTION = [{"role": "system", "content": "Answer briefly."}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Where did the ship sail?"}]}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = running_server()
    notes = write_text(tmp_path_factory.mktemp("openai") / "voyage.txt", book_lines(40, seed=3))
    server.ui.service.ingest([notes], "voyage")
    return server


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "v1", api_key="unused", max_retries=0)


def test_models_list_the_corpora(client) -> None:
    models = {model.id: model for model in client.models.list()}
    assert "voyage" in models and models["voyage"].owned_by == "rmtqa"
    assert models["voyage"].model_extra["rmtqa"]["complete"] is True


def test_a_completion_answers_the_last_user_message_with_sources(client) -> None:
    completion = client.chat.completions.create(model="voyage", messages=QUESTION, max_tokens=8)
    message = completion.choices[0].message
    assert completion.object == "chat.completion" and completion.model == "voyage" and message.role == "assistant"
    sources = message.model_extra["sources"]
    assert sources and {"file", "page", "lines", "excerpt", "score"} <= set(sources[0])
    answer, _, listed = message.content.partition("\n\nSources:\n")
    assert answer.strip() and listed.splitlines()[0].startswith(f"1. {sources[0]['file']}, line")


def test_streaming_sends_chunks_then_done(client, server) -> None:
    chunks = list(client.chat.completions.create(model="voyage:fast", messages=QUESTION, stream=True, max_tokens=8))
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"} and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text.strip() and "\n\nSources:\n1. " in text
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-2].choices[0].delta.model_extra["sources"]

    body = {"model": "voyage", "messages": QUESTION, "stream": True, "max_tokens": 4}
    with httpx.stream("POST", server.url + "v1/chat/completions", json=body, timeout=120) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_errors_are_openai_error_objects(client, server) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-corpus", messages=QUESTION)
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="too long"):
        client.chat.completions.create(model="voyage", messages=[{"role": "user", "content": "why " * 5000}])
    with pytest.raises(openai.BadRequestError, match="unknown mode 'slow'"):
        client.chat.completions.create(model="voyage", messages=QUESTION, extra_body={"mode": "slow"})
    if not OpenAiApi(server.ui.service, server.ui.public, None).takes_mode:  # until the service's ask has modes
        with pytest.raises(openai.BadRequestError, match="only fast"):
            client.chat.completions.create(model="voyage", messages=QUESTION, extra_body={"mode": "deep"})
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="voyage", messages=[{"role": "system", "content": "hi"}])
    response = httpx.post(server.url + "v1/chat/completions", content=b"{not json", timeout=30)
    assert response.status_code == 400 and response.json()["error"]["message"] == "the body is not valid JSON"
    response = httpx.post(server.url + "v1/chat/completions", content=b" " * (1024 * 1024 + 1), timeout=30)
    assert response.status_code == 413 and "error" in response.json()


@pytest.fixture(scope="module")
def login_url(server):
    """The API alone, behind a login, on its own port (the UI's login form is Gradio's)."""
    import uvicorn
    from fastapi import FastAPI

    from app.webui.auth import LoginThrottle
    from app.webui.openai_api import openai_api_routes

    app = FastAPI(routes=openai_api_routes(server.ui.service, server.ui.public, LoginThrottle("reader", "s3cret:pw")))
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    uvicorn_server.should_exit = True
    thread.join(10)


def test_with_a_login_the_bearer_token_is_its_password(login_url) -> None:
    for key in ("s3cret:pw", "reader:s3cret:pw"):
        assert "voyage" in [model.id for model in openai.OpenAI(base_url=login_url, api_key=key, max_retries=0).models.list()]
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(base_url=login_url, api_key="guess", max_retries=0).models.list()
    assert wrong.value.body["code"] == "invalid_api_key"
    response = httpx.post(f"{login_url}/chat/completions", json={"model": "voyage", "messages": QUESTION}, timeout=30)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_token_check_goes_through_the_login_delay() -> None:
    from app.webui.auth import FREE_FAILURES, LoginThrottle

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def checks() -> list[bool]:
        login = LoginThrottle("reader", "pw", clock=lambda: 0.0, sleep=sleep)
        return [await login.check_token(token) for token in ["guess"] * (FREE_FAILURES + 1) + ["pw"]]

    assert asyncio.run(checks()) == [False] * (FREE_FAILURES + 1) + [True]
    assert waits == [1.0, 2.0]  # the fourth failure waited, and so did the right token after it

