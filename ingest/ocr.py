"""OCR for PDF pages without a text layer (scans), offline, from the optional `ocr` extra.

The engine is RapidOCR (`rapidocr` on PyPI) on onnxruntime, with the PP-OCRv6 detection and
recognition models its wheel ships: they are named by path, so nothing is ever downloaded
(a rapidocr without them is reported as unusable, never fetched). Pages are rendered with
pypdfium2 at `DPI`, at most `Limits.max_ocr_pixels` pixels. The engine loads on the first
page that needs it, so `--ocr` costs nothing on PDFs that all have text.

Text comes out one detected line per line, top to bottom (two columns interleave).
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ingest.limits import Limits

DPI = 200
INSTALL_HINT = "install the OCR extra: make ocr (or pip install -e '.[ocr]')"
# The models rapidocr's wheel ships (rapidocr/models/): detection, recognition, orientation.
MODEL_FILES = {
    "Det.model_path": "PP-OCRv6_det_small.onnx",
    "Rec.model_path": "PP-OCRv6_rec_small.onnx",
    "Cls.model_path": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
REQUIRED_MODULES = ("rapidocr", "onnxruntime", "pypdfium2")


class OcrUnavailable(RuntimeError):
    """OCR was asked for but cannot run here (the extra is not installed, models missing)."""


def missing_modules() -> list[str]:
    """The packages of the `ocr` extra that are not installed."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def model_paths() -> dict[str, str]:
    """RapidOCR settings naming the model files inside the installed package."""
    spec = importlib.util.find_spec("rapidocr")
    folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
    paths = {key: folder / name for key, name in MODEL_FILES.items()} if folder else {}
    missing = [name for key, name in MODEL_FILES.items() if key not in paths or not paths[key].is_file()]
    if missing:
        raise OcrUnavailable(f"the installed rapidocr ships no {', '.join(missing)} (needs rapidocr>=3.10; models are never downloaded)")
    return {key: str(path) for key, path in paths.items()}


class PageOcr:
    """Reads the text of rendered PDF pages (one engine per ingest: its models load once)."""

    def __init__(self, limits: Limits = Limits(), dpi: int = DPI) -> None:
        missing = missing_modules()
        if missing:
            raise OcrUnavailable(f"OCR needs {', '.join(missing)}: {INSTALL_HINT}")
        self._settings = model_paths()
        self.limits, self.dpi = limits, dpi
        self._engine: Any = None

    def pdf_page_text(self, document: Any, number: int) -> str:
        """The text OCR finds on page `number` (1-based) of a pypdfium2 document ('' if none)."""
        page = document[number - 1]
        try:
            width, height = page.get_size()
            scale = self.dpi / 72
            pixels = width * height * scale * scale
            if pixels > self.limits.max_ocr_pixels:
                scale *= (self.limits.max_ocr_pixels / pixels) ** 0.5
            image = page.render(scale=scale).to_numpy()  # BGR, as OpenCV-based engines expect
        finally:
            page.close()
        if min(image.shape[:2]) < 8:  # nothing legible fits (some PDFs have 4-point pages)
            return ""
        result = self._load()(image)
        return "\n".join(line.strip() for line in result.txts or () if line.strip())

    def _load(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params={**self._settings, "Global.log_level": "error"})
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine


class LazyPdf:
    """A PDF opened for rendering only when a page first needs OCR (most never do); closed,
    with its file, when the `with` block ends."""

    def __init__(self, open_file: Callable[[], BinaryIO]) -> None:
        self._open_file = open_file
        self._handle: BinaryIO | None = None
        self._document: Any = None

    def document(self) -> Any:
        """The pypdfium2 document."""
        if self._document is None:
            import pypdfium2

            self._handle = self._open_file()
            self._document = pypdfium2.PdfDocument(self._handle)
        return self._document

    def __enter__(self) -> LazyPdf:
        return self

    def __exit__(self, *exc) -> None:
        if self._document is not None:
            self._document.close()
        if self._handle is not None:
            self._handle.close()
