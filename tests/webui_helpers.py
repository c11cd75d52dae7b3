"""One running web UI per test process, shared by the API and browser tests: a tiny random
reader (`tests.corpus_helpers.shared_model_dir`), a temporary RMTQA home, 127.0.0.1 on a free
port, a small upload cap (so the over-the-cap test needs only a small file)."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MAX_UPLOAD_MB = 1.0
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PDF_SAMPLE = SHARED_DATA / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"


@dataclass
class Server:
    url: str
    home: Path
    model_dir: Path
    demo: object

    @property
    def ui(self):
        return self.demo.rmtqa


_SERVER: Server | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAKE_EVAL = {"task": "qa1", "split": "val", "results": [{"length": 1000, "accuracy": 0.5, "n": 40, "tokens_per_s": 1000}],
             "baselines": {"last_segment": [{"length": 1000, "accuracy": 0.25, "n": 40}]}}
CARD = """# Test reader

A tiny random model for the web UI tests.

| part | shape |
|---|---|
| memory | `[memory | 32 tokens | memory]` |

![the heatmap](eval/qa1.png)
"""


def describe_model(directory: Path, weights: Path) -> Path:
    """A copy of the tiny random reader with what the Model tab shows: a card, an evaluation
    report and a heatmap under eval/ (made-up numbers: this is a test fixture)."""
    from PIL import Image

    shutil.copytree(weights, directory)
    (directory / "MODEL_CARD.md").write_text(CARD)
    (directory / "train_config.json").write_text(json.dumps({"tasks": ["qa1"]}))  # what it was "trained" on
    (directory / "eval").mkdir()
    (directory / "eval" / "qa1.json").write_text(json.dumps(FAKE_EVAL))
    Image.new("RGB", (64, 32), "steelblue").save(directory / "eval" / "qa1.png")
    return directory


def running_server() -> Server:
    """Start the UI once per process (closed at exit)."""
    global _SERVER
    if _SERVER is None:
        import torch

        from app.service.corpus_service import CorpusService
        from app.webui.layout import build_app, launch_app
        from tests.corpus_helpers import shared_model_dir

        torch.set_num_threads(1)
        home = Path(tempfile.mkdtemp(prefix="rmtqa-webui-home-"))
        atexit.register(shutil.rmtree, home, True)
        model_dir = describe_model(home / "model", shared_model_dir())
        service = CorpusService(home, model_dir)
        demo = build_app(service, max_upload_mb=MAX_UPLOAD_MB, local_paths=True)
        _, url, _ = launch_app(demo, host="127.0.0.1", port=free_port(), max_upload_mb=MAX_UPLOAD_MB,
                               prevent_thread_lock=True, quiet=True)
        atexit.register(demo.close)
        _SERVER = Server(url.rstrip("/") + "/", home, model_dir, demo)
    return _SERVER
