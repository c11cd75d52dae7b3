"""How many CPU threads the reading commands (`ingest`, `ask`, `rm`, `serve`) use."""
from __future__ import annotations

import os


def configure_threads() -> None:
    """`RMTQA_THREADS=N` sets torch's intra-op threads (useful next to other CPU jobs)."""
    value = os.environ.get("RMTQA_THREADS")
    if value:
        import torch

        torch.set_num_threads(max(1, int(value)))
