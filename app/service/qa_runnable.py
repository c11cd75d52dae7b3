"""A corpus as a langchain-core `Runnable`: question in, answer and sources out.

    qa = CorpusQA(CorpusService(), "books")
    qa.invoke("Who is Elizabeth's sister?")   # {"answer", "sources", "seconds", ...} as `CorpusService.ask`
    for chunk in qa.stream("..."): ...         # {"answer": piece} chunks, then {"sources", "seconds", ...}
    qa.batch(["q1", "q2"])                     # concurrent asks (the service is thread-safe)

Input is a question string or a dict {"question", "as_of"?, "max_new_tokens"?, "sources"?}.
Stream chunks are `AddableDict`s, so `functools.reduce(operator.add, chunks)` (what
langchain does to aggregate a stream) gives the same dict as `invoke` (answer included).
"""
from __future__ import annotations

from typing import Any, Iterator

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import AddableDict

from app.service.corpus_service import CorpusService

_OPTIONS = ("as_of", "max_new_tokens", "sources", "top_k", "temperature", "top_p")


class CorpusQA(Runnable[Any, dict]):
    """Answers questions from one corpus of a `CorpusService`; `options` are defaults for
    `CorpusService.ask` (e.g. as_of="book.pdf"), overridable per input dict."""

    def __init__(self, service: CorpusService, corpus: str, **options: Any):
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)} (known: {', '.join(_OPTIONS)})")
        self.service, self.corpus, self.options = service, corpus, options

    @property
    def InputType(self) -> type:  # noqa: N802 - langchain's name
        return str

    @property
    def OutputType(self) -> type:  # noqa: N802
        return dict

    def _parse(self, value: Any) -> tuple[str, dict]:
        if isinstance(value, str):
            return value, dict(self.options)
        if isinstance(value, dict) and isinstance(value.get("question"), str):
            extra = {k: v for k, v in value.items() if k in _OPTIONS}
            return value["question"], {**self.options, **extra}
        raise TypeError("CorpusQA expects a question string or a dict with a 'question' string")

    def _ask(self, value: Any) -> dict:
        question, options = self._parse(value)
        return self.service.ask(self.corpus, question, **options)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:  # noqa: A002 - langchain's name
        return self._call_with_config(self._ask, input, config, run_type="chain")

    def _stream(self, inputs: Iterator[Any]) -> Iterator[AddableDict]:
        for value in inputs:
            question, options = self._parse(value)
            streamed = ""
            for event in self.service.ask_stream(self.corpus, question, **options):
                if event["type"] == "token":
                    text = event["text"] if streamed else event["text"].lstrip()
                    if text:
                        streamed += text
                        yield AddableDict(answer=text)
                else:
                    rest = {k: v for k, v in event.items() if k not in ("type", "answer")}
                    answer = event["answer"]
                    if answer.startswith(streamed) and len(answer) > len(streamed):
                        rest["answer"] = answer[len(streamed):]  # what decoding held back
                    yield AddableDict(rest)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AddableDict]:  # noqa: A002
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, run_type="chain")

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AddableDict]:  # noqa: A002
        yield from self._transform_stream_with_config(input, self._stream, config, run_type="chain")
