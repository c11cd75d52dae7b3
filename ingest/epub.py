"""EPUB books: chapters in spine (reading) order, read from the zip itself, no network.

An EPUB is a zip, so it gets the same caps as any archive. The package document (OPF) named
by META-INF/container.xml lists the chapters; each becomes one Document whose `section` is
its path in the book. Line numbers run through the whole book's extracted text.
"""
from __future__ import annotations

import posixpath
import zipfile
from typing import Iterator
from urllib.parse import unquote
from xml.etree import ElementTree

from langchain_core.documents import Document

from ingest.archive import open_zip, unsafe_reason
from ingest.documents import FileLoader, make_document
from ingest.html import html_to_text
from ingest.limits import human_bytes

CONTAINER = "META-INF/container.xml"
ENCRYPTION = "META-INF/encryption.xml"
MAX_XML_BYTES = 16 * 1024 * 1024


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    info = archive.getinfo(name)
    if info.file_size > MAX_XML_BYTES:
        raise ValueError(f"{name} is {human_bytes(info.file_size)}")
    return ElementTree.fromstring(archive.read(info))


def spine(archive: zipfile.ZipFile) -> tuple[list[str], str | None]:
    """(chapter paths in reading order, book title) from the package document."""
    rootfile = next((el for el in _xml(archive, CONTAINER).iter() if _local(el.tag) == "rootfile"), None)
    if rootfile is None or not rootfile.get("full-path"):
        raise ValueError("container.xml names no package document")
    opf_path = rootfile.get("full-path")
    package = _xml(archive, opf_path)
    base = posixpath.dirname(opf_path)
    manifest, order, title = {}, [], None
    for element in package.iter():
        tag = _local(element.tag)
        if tag == "item" and element.get("id") and element.get("href"):
            href = unquote(element.get("href").split("#", 1)[0])
            manifest[element.get("id")] = posixpath.normpath(posixpath.join(base, href))
        elif tag == "itemref" and element.get("idref"):
            order.append(element.get("idref"))
        elif tag == "title" and title is None and (element.text or "").strip():
            title = " ".join(element.text.split())
    return [manifest[idref] for idref in order if idref in manifest], title


def encrypted_paths(archive: zipfile.ZipFile) -> set[str]:
    """Resources under DRM (font obfuscation is harmless to text, but is listed too)."""
    if ENCRYPTION not in archive.namelist():
        return set()
    return {unquote(el.get("URI", "")) for el in _xml(archive, ENCRYPTION).iter() if _local(el.tag) == "CipherReference"}


class EpubLoader(FileLoader):
    """One Document per spine chapter with text; `section` is the chapter's path."""

    def _documents(self) -> Iterator[Document]:
        ref = self.file
        archive = open_zip(ref, self.report, self.limits)
        if archive is None:
            return
        with archive:
            try:
                chapters, title = spine(archive)
                locked = encrypted_paths(archive)
            except Exception as error:  # noqa: BLE001 - KeyError, ParseError, ValueError
                self.report.skip(ref.source, f"not a valid EPUB: {error}")
                return
            if chapters and all(chapter in locked for chapter in chapters):
                self.report.skip(ref.source, "EPUB is DRM-encrypted")
                return
            line, found = 1, False
            for chapter in chapters:
                text = self._chapter_text(archive, chapter, locked)
                if not text or not text.strip():
                    continue
                found = True
                text = text if text.endswith("\n") else text + "\n"
                yield make_document(text, source=ref.source, kind="epub", line_start=line, section=chapter, title=title)
                line += text.count("\n")
            if not found:
                self.report.skip(ref.source, "no text in the EPUB's chapters")

    def _chapter_text(self, archive: zipfile.ZipFile, chapter: str, locked: set[str]) -> str | None:
        source = f"{self.file.source}/{chapter}"
        try:
            info = archive.getinfo(chapter)
        except KeyError:
            self.report.skip(source, "chapter listed in the EPUB's spine is missing")
            return None
        reason = unsafe_reason(info) or ("DRM-encrypted chapter" if chapter in locked else None)
        if reason is None and info.file_size > self.limits.max_member_bytes:
            reason = f"chapter too large ({human_bytes(info.file_size)})"
        if reason:
            self.report.skip(source, reason)
            return None
        try:
            return html_to_text(archive.read(info))[0]
        except Exception as error:  # noqa: BLE001 - a damaged chapter must not lose the book
            self.report.skip(source, f"damaged chapter: {error}")
            return None
