"""Background reading for the web UI: every `CorpusService.ingest` of the server is a job,
visible to and cancellable by every authorised client, whoever started it.

Scheduling, so that no upload holds the server: one job per corpus, at most `slots` jobs
reading at once, the rest waiting first come, first served; a per-upload token cap (the
service's `max_tokens`) bounds how long any one job can read. A small upload therefore
waits at most for a slot, never behind every big one. A job runs in its own thread: the
request or browser tab that started it may go away; the job goes on and stays listed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from app.corpus.errors import CorpusError, CorpusLocked
from app.corpus.uploads import Staged
from app.service.corpus_service import Cancelled, CorpusService

log = logging.getLogger("rmtqa.webui")

DEFAULT_SLOTS = 2
MAX_WAITING = 32  # jobs queued at once; more are refused (each holds its staged upload on disk)
KEEP_FINISHED = 20  # finished jobs still listed, newest first


class UploadError(CorpusError):
    """An upload that is refused (too large, nothing given, ...): one clear line."""


class ReadingJob:
    """One `service.ingest` in its own thread: queued, then scanning, then reading."""

    def __init__(self, corpus: str, paths: list[str], staged: Staged | None, files: list[str]):
        self.corpus, self.paths, self.staged, self.files = corpus, paths, staged, files
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.progress: dict | None = None  # the latest service progress event
        self.report: dict | None = None
        self.error: str | None = None
        self.cancelled_early = False  # cancelled before anything was read (queued or scanning)
        self.queued_at = time.time()
        self.started_at: float | None = None
        self.ended_at: float | None = None

    def on_progress(self, event: dict) -> None:
        self.progress = dict(event)

    @property
    def running(self) -> bool:
        """Queued or reading (not finished)."""
        return not self.done.is_set()

    @property
    def state(self) -> str:
        """"queued", "starting", "scanning", "reading", "cancelling", "cancelled", "failed" or "done"."""
        if self.done.is_set():
            if self.cancelled_early or (self.report or {}).get("cancelled"):
                return "cancelled"
            return "failed" if self.error is not None else "done"
        if self.cancel.is_set():
            return "cancelling"
        if self.started_at is None:
            return "queued"
        return {"scan": "scanning", "read": "reading"}.get((self.progress or {}).get("phase"), "starting")

    def view(self, name: Callable[[str], str]) -> dict:
        """The job as any client may see it (JSON-ready; files by the names users gave)."""
        progress = self.progress or {}
        since = self.ended_at or time.time()
        return {
            "corpus": self.corpus, "state": self.state, "files": [name(f) for f in self.files],
            "segments_done": progress.get("segments_done"), "segments_total": progress.get("segments_total"),
            "tokens_scanned": progress.get("tokens") if progress.get("phase") == "scan" else None,
            "tokens_per_s": progress.get("tokens_per_s"), "eta_s": progress.get("eta_s"),
            "waited_s": round((self.started_at or since) - self.queued_at, 1),
            "ran_s": round(since - self.started_at, 1) if self.started_at else None,
            "error": self.error,
        }


class ReadingJobs:
    """The readings of this server: one job per corpus, `slots` at a time, FIFO."""

    def __init__(self, service: CorpusService, *, slots: int = DEFAULT_SLOTS, max_tokens: int | None = None,
                 clean: Callable[[str], str] = str):
        self.service, self.slots, self.max_tokens, self.clean = service, max(1, slots), max_tokens, clean
        self._jobs: dict[str, ReadingJob] = {}
        self._finished: deque[ReadingJob] = deque(maxlen=KEEP_FINISHED)
        self._waiting: deque[ReadingJob] = deque()
        self._active = 0
        self._lock = threading.Condition()

    def start(self, corpus: str, paths: list[str], staged: Staged | None = None, files: list[str] | None = None) -> ReadingJob:
        """Queue reading `paths` and `staged` uploads into `corpus`. Refused with
        `CorpusLocked` while that corpus has a job, and when too many jobs wait. The job
        owns `staged` from here on (it is discarded whatever happens)."""
        with self._lock:
            current = self._jobs.get(corpus)
            if current is not None and current.running:
                raise CorpusLocked(f"corpus {corpus} is being read already; wait until it has finished or cancel it")
            if len(self._waiting) >= MAX_WAITING:
                raise UploadError(f"{len(self._waiting)} readings are waiting already; try again later")
            job = ReadingJob(corpus, paths, staged, files if files is not None else list(paths))
            if current is not None:
                self._finished.appendleft(current)
            self._jobs[corpus] = job
            self._waiting.append(job)
        threading.Thread(target=self._run, args=(job,), name=f"rmtqa-read-{corpus}", daemon=True).start()
        return job

    def _run(self, job: ReadingJob) -> None:
        try:
            if not self._wait_for_slot(job):
                job.cancelled_early = True
                return
            try:
                job.report = self.service.ingest(job.paths, job.corpus, uploads=job.staged, max_tokens=self.max_tokens,
                                                 progress=job.on_progress, cancel=job.cancel)
            finally:
                with self._lock:
                    self._active -= 1
                    self._lock.notify_all()
        except Cancelled:
            job.cancelled_early = True
        except CorpusError as error:
            job.error = self.clean(str(error))
        except Exception as error:  # noqa: BLE001 - shown to the user, logged in full
            log.exception("reading corpus %s failed", job.corpus)
            job.error = f"reading failed: {type(error).__name__}: {self.clean(str(error))}"
        finally:
            if job.staged is not None:
                job.staged.discard()
            job.ended_at = time.time()
            job.done.set()

    def _wait_for_slot(self, job: ReadingJob) -> bool:
        """Block until `job` is first in line and a slot is free (True), or it is cancelled."""
        with self._lock:
            while not job.cancel.is_set() and not (self._waiting[0] is job and self._active < self.slots):
                self._lock.wait()
            self._waiting.remove(job)
            self._lock.notify_all()  # the next in line may fit too
            if job.cancel.is_set():
                return False
            self._active += 1
            job.started_at = time.time()
            return True

    def ahead(self, job: ReadingJob) -> int | None:
        """How many jobs wait before `job` (None once it has started)."""
        with self._lock:
            return list(self._waiting).index(job) if job in self._waiting else None

    def running(self, corpus: str) -> ReadingJob | None:
        job = self._jobs.get(corpus)
        return job if job is not None and job.running else None

    def jobs(self) -> list[ReadingJob]:
        """Every job: queued and running ones (oldest first), then recently finished ones."""
        with self._lock:
            current = sorted(self._jobs.values(), key=lambda job: job.queued_at)
            live = [job for job in current if job.running]
            done = sorted([job for job in current if not job.running] + list(self._finished), key=lambda job: -(job.ended_at or 0))
        return live + done[:KEEP_FINISHED]

    def cancel(self, corpus: str) -> bool:
        job = self.running(corpus)
        if job is None:
            return False
        job.cancel.set()
        with self._lock:
            self._lock.notify_all()  # a queued job stops waiting
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every reading and wait (up to `timeout` s) until each has saved its last segment."""
        jobs = [job for job in self._jobs.values() if job.running]
        for job in jobs:
            self.cancel(job.corpus)
        for job in jobs:
            job.done.wait(timeout)
