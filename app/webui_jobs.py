"""Background reading for the web UI: one thread per corpus being read, with progress and
cancellation (both through `CorpusService.ingest`), and a home for uploaded files.

Uploads are copied out of Gradio's temporary cache into `$RMTQA_HOME/uploads/<corpus>/`,
because a corpus re-scans its source paths on every later ingest (to notice changes): the
files must outlive the request. A file uploaded again under the same name replaces the
earlier one (the corpus then re-reads from the first segment that changed).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from app.corpus_store import CorpusError, CorpusLocked, validate_name
from app.service import CorpusService

log = logging.getLogger("rmtqa.webui")


class UploadError(CorpusError):
    """An upload that is refused (too large, nothing given, ...): one clear line."""


def _safe_name(name: str) -> str:
    name = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    return name[-200:] or "upload"


class Uploads:
    """Uploaded files, per corpus, under `root` (`$RMTQA_HOME/uploads`)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def directory(self, corpus: str) -> Path:
        return self.root / validate_name(corpus)

    def store(self, corpus: str, files: Iterable[str]) -> list[str]:
        """Copy uploaded files into the corpus's folder; their new paths, in order."""
        folder = self.directory(corpus)
        folder.mkdir(parents=True, exist_ok=True)
        out: list[str] = []
        for source in files:
            name = _safe_name(os.path.basename(source))
            target = folder / name
            stem, suffix, n = Path(name).stem, Path(name).suffix, 2
            while str(target) in out:  # two files of one upload with the same name
                target = folder / f"{stem} ({n}){suffix}"
                n += 1
            if not (target.is_file() and _same_file(source, target)):
                tmp = folder / f".{target.name}.{os.getpid()}.tmp"
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            out.append(str(target))
        return out

    def remove(self, corpus: str) -> None:
        shutil.rmtree(self.directory(corpus), ignore_errors=True)

    def display(self, path: str) -> str:
        """An uploaded file as its user named it (`book.pdf`); other paths unchanged."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return path
        return str(Path(*relative.parts[1:])) if len(relative.parts) > 1 else str(relative)

    def clean_message(self, message: str) -> str:
        """Error text with upload paths shortened to the names users gave them."""
        root = str(self.root) + os.sep
        while root in message:
            start = message.index(root)
            rest = message[start + len(root):]
            corpus_end = rest.find(os.sep)
            message = message[:start] + (rest[corpus_end + 1:] if corpus_end >= 0 else rest)
        return message


def _same_file(a: str | Path, b: str | Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


class ReadingJob:
    """One `service.ingest` running in its own thread."""

    def __init__(self, corpus: str, paths: list[str]):
        self.corpus, self.paths = corpus, paths
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.progress: dict | None = None  # the latest service progress event
        self.report: dict | None = None
        self.error: str | None = None
        self.started = time.time()

    def on_progress(self, event: dict) -> None:
        self.progress = dict(event)

    @property
    def running(self) -> bool:
        return not self.done.is_set()


class ReadingJobs:
    """The corpora being read by this server; at most one job per corpus."""

    def __init__(self, service: CorpusService, uploads: Uploads):
        self.service, self.uploads = service, uploads
        self._jobs: dict[str, ReadingJob] = {}
        self._lock = threading.Lock()

    def start(self, corpus: str, prepare: Callable[[], list[str]]) -> ReadingJob:
        """Start reading `prepare()` (the paths; called under the lock, e.g. to store
        uploads) into `corpus`. Refused with `CorpusLocked` while it is being read."""
        with self._lock:
            current = self._jobs.get(corpus)
            if current is not None and current.running:
                raise CorpusLocked(f"corpus {corpus} is being read already; wait until it has finished or cancel it")
            job = ReadingJob(corpus, prepare())
            self._jobs[corpus] = job
        threading.Thread(target=self._run, args=(job,), name=f"rmtqa-read-{corpus}", daemon=True).start()
        return job

    def _run(self, job: ReadingJob) -> None:
        try:
            job.report = self.service.ingest(job.paths, job.corpus, progress=job.on_progress, cancel=job.cancel)
        except CorpusError as error:
            job.error = self.uploads.clean_message(str(error))
        except Exception as error:  # noqa: BLE001 - shown to the user, logged in full
            log.exception("reading corpus %s failed", job.corpus)
            job.error = f"reading failed: {type(error).__name__}: {self.uploads.clean_message(str(error))}"
        finally:
            if job.error is not None and not self.service.store.exists(job.corpus):
                self.uploads.remove(job.corpus)  # a corpus that was never created keeps no uploads
            job.done.set()

    def running(self, corpus: str) -> ReadingJob | None:
        job = self._jobs.get(corpus)
        return job if job is not None and job.running else None

    def cancel(self, corpus: str) -> bool:
        job = self.running(corpus)
        if job is None:
            return False
        job.cancel.set()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every reading and wait (up to `timeout` s) until each has saved its last segment."""
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            job.done.wait(timeout)
