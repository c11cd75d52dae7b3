"""One call from paths to a token stream and a report, shared by the CLI, corpora and the UI."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.ocr import PageOcr
from ingest.records import DocumentRecord
from ingest.report import IngestReport, Skipped
from ingest.sources import iter_documents
from ingest.stream import CorpusStream
from ingest.tokenizers import tokenizer_name

Progress = Callable[[DocumentRecord | Skipped], None]


def ingest_paths(
    paths: Iterable[str | Path | tuple[str | Path, str]],
    tokenizer,
    *,
    progress: Progress | None = None,
    keep_tokens: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    ocr: bool | PageOcr = False,
) -> tuple[IngestReport, CorpusStream]:
    """Read every file under `paths` into one token stream.

    `tokenizer` is anything with `encode(text) -> ids` (or a plain callable); `progress` is
    called after each document with its record (or its skip). `keep_tokens=False` only
    counts, for dry runs over huge inputs. A path given as (path, name) is named `name` in
    the stream and the report (see `iter_documents`). `ocr=True` reads PDF pages without a
    text layer by OCR (`ingest.ocr`; raises `OcrUnavailable` at once when the extra is not
    installed). Bad files end up in `report.skipped`; this raises only for bugs (and a missing
    OCR engine), never for bad input.
    """
    engine = PageOcr(limits) if ocr is True else ocr or None
    started = time.perf_counter()
    report = IngestReport(tokenizer=tokenizer_name(tokenizer))
    stream = CorpusStream(tokenizer, keep_tokens=keep_tokens, report=report)
    for document in iter_documents(paths, report, limits=limits, ocr=engine):
        try:
            result = stream.add(document)
        except Exception as error:  # noqa: BLE001 - a tokenizer failing on odd text
            meta = document.metadata
            result = Skipped(meta["source"], f"tokenizer failed: {type(error).__name__}: {error}", meta.get("page"))
            report.skip(result.path, result.reason, result.page)
        if isinstance(result, DocumentRecord):
            report.add(result)
        if progress is not None:
            progress(result)
    report.finish(time.perf_counter() - started)
    return report, stream
