"""Zip archives: read in place, hostile entries skipped, zip bombs refused, repos inside."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from ingest.limits import Limits
from ingest.pipeline import ingest_paths
from ingest.tokenizers import ByteTokenizer


def make_zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def mark_encrypted(path: Path, name: bytes) -> None:
    """Set the 'encrypted' flag of an entry in the central directory (zipfile cannot write it)."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 8] |= 0x1
    path.write_bytes(bytes(data))


def run(*paths: Path, limits: Limits = Limits()):
    report, stream = ingest_paths(list(paths), ByteTokenizer(), limits=limits)
    reasons = {item.path: item.reason for item in report.skipped}
    return report, stream, reasons


def test_zip_slip_absolute_and_symlink_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok/good.txt", "good text\n")
        archive.writestr(zipfile.ZipInfo("../../evil.txt"), "evil\n")
        archive.writestr(zipfile.ZipInfo("/etc/abs.txt"), "absolute\n")
        archive.writestr(zipfile.ZipInfo("C:/windows.txt"), "drive\n")
        link = zipfile.ZipInfo("ok/link.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("ok/locked.txt", "secret\n")
    mark_encrypted(path, b"ok/locked.txt")
    report, stream, reasons = run(path)
    source = str(path)
    assert [entry.path for entry in report.documents] == [f"{source}/ok/good.txt"]
    assert reasons[f"{source}/../../evil.txt"] == "unsafe path in archive (path traversal)"
    assert reasons[f"{source}//etc/abs.txt"] == "unsafe path in archive (absolute path)"
    assert reasons[f"{source}/C:/windows.txt"] == "unsafe path in archive (absolute path)"
    assert reasons[f"{source}/ok/link.txt"] == "symbolic link in archive (not followed)"
    assert reasons[f"{source}/ok/locked.txt"] == "encrypted entry (needs a password)"
    assert not list(tmp_path.glob("**/evil.txt")) and not (tmp_path / "ok").exists()  # nothing extracted
    assert stream.locate(0)["path"] == f"{source}/ok/good.txt"


def test_zip_bomb_is_refused_with_a_reason(tmp_path: Path) -> None:
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.txt": b"\0" * (20 * 1024 * 1024), "note.txt": b"hello\n"})
    assert bomb.stat().st_size < 100_000
    report, _, reasons = run(bomb)
    assert not report.documents
    assert "zip bomb?" in reasons[str(bomb)] and "limit 100:1" in reasons[str(bomb)]


def test_total_size_and_entry_count_caps(tmp_path: Path) -> None:
    big = make_zip(tmp_path / "big.zip", {"a.txt": b"x" * 5000}, zipfile.ZIP_STORED)
    many = make_zip(tmp_path / "many.zip", {f"f{n}.txt": b"text\n" for n in range(20)})
    _, _, reasons = run(big, many, limits=Limits(max_zip_total_bytes=4000, max_zip_entries=10))
    assert reasons[str(big)].startswith("refused: expands to 4.9 KiB (limit 3.9 KiB)")
    assert reasons[str(many)].startswith("refused: 20 entries (limit 10)")


def test_nested_archives_and_depth_cap(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"chapter.txt": b"inside the inner archive\n"})
    outer = make_zip(tmp_path / "outer.zip", {"inner.zip": inner.read_bytes(), "top.md": b"# top\n"})
    inner.unlink()
    report, _, _ = run(outer)
    assert [entry.path for entry in report.documents] == [f"{outer}/inner.zip/chapter.txt", f"{outer}/top.md"]
    report, _, reasons = run(outer, limits=Limits(max_archive_depth=1))
    assert reasons[f"{outer}/inner.zip"] == "archive nested more than 1 deep"


def test_repository_zip_uses_gitignore_skips_and_import_order(tmp_path: Path) -> None:
    repo = make_zip(
        tmp_path / "repo.zip",
        {
            "proj/.gitignore": b"*.log\nbuild/\n",
            "proj/app.py": b"import util\nprint(util.X)\n",
            "proj/util.py": b"X = 1\n",
            "proj/debug.log": b"noise\n",
            "proj/build/gen.py": b"GENERATED = 1\n",
            "proj/node_modules/m.js": b"module.exports = 1\n",
            "proj/blob.py": b"\x00\x01binary\x00" * 10,
            "proj/image.png": b"\x89PNG\r\n",
        },
    )
    report, _, reasons = run(repo)
    read = [entry.path.removeprefix(f"{repo}/") for entry in report.documents]
    assert read == ["proj/.gitignore", "proj/util.py", "proj/app.py"]
    assert reasons[f"{repo}/proj/debug.log"] == "ignored by .gitignore"
    assert reasons[f"{repo}/proj/build"] == "skipped folder: build output"
    assert reasons[f"{repo}/proj/node_modules"] == "skipped folder: installed dependencies"
    assert reasons[f"{repo}/proj/blob.py"] == "binary file (not text)"
    assert reasons[f"{repo}/proj/image.png"] == "unsupported file type (.png)"


def test_damaged_zip(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    good = make_zip(tmp_path / "good.zip", {"a.txt": b"fine\n"})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-30])
    report, _, reasons = run(tmp_path / "broken.zip", truncated, good)
    assert reasons[str(tmp_path / "broken.zip")].startswith("damaged or not a zip archive")
    assert reasons[str(truncated)].startswith("damaged or not a zip archive")
    assert [entry.path for entry in report.documents] == [f"{good}/a.txt"]
