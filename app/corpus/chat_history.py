"""Chat history per corpus (and per login), kept across page reloads and server restarts.

One SQLite file (`$RMTQA_HOME/chat.sqlite3`, the standard library's sqlite3): a row per
question with its answer and the service's result (sources, as-of, segment), so a reloaded
page shows each answer as it was first shown. A connection per call keeps it safe from
any thread; WAL lets the UI read while another request writes.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

MAX_SHOWN = 200  # exchanges loaded into a page, newest kept

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    corpus TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    asked REAL NOT NULL,
    question TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_by_corpus ON exchanges (corpus, user, id);
"""


class ChatHistory:
    """Exchanges (question + result dict) by corpus and user ("" without a login)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(_SCHEMA)
        return connection

    def add(self, corpus: str, question: str, result: dict, user: str = "") -> None:
        """Record one exchange; `result` is JSON-ready (the answer, its sources, notes)."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO exchanges (corpus, user, asked, question, result) VALUES (?, ?, ?, ?, ?)",
                       (corpus, user, time.time(), question, json.dumps(result, ensure_ascii=False)))

    def load(self, corpus: str, user: str = "", limit: int = MAX_SHOWN) -> list[dict]:
        """The latest `limit` exchanges, oldest first: [{"question", "result", "asked"}]."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT question, result, asked FROM exchanges WHERE corpus = ? AND user = ? "
                              "ORDER BY id DESC LIMIT ?", (corpus, user, limit)).fetchall()
        out = []
        for question, result, asked in reversed(rows):
            try:
                out.append({"question": question, "result": json.loads(result), "asked": asked})
            except ValueError:
                continue
        return out

    def clear(self, corpus: str, user: str | None = None) -> int:
        """Forget a corpus's exchanges (of one user, or of everyone); how many were removed."""
        if not self.path.exists():
            return 0
        with closing(self._connect()) as db, db:
            if user is None:
                return db.execute("DELETE FROM exchanges WHERE corpus = ?", (corpus,)).rowcount
            return db.execute("DELETE FROM exchanges WHERE corpus = ? AND user = ?", (corpus, user)).rowcount
