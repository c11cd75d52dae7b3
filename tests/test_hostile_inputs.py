"""Hostile inputs to ingestion: zip amplification, undecodable file names, paths past PATH_MAX.

Each test builds the hostile shape the reliability probe found (issue 12) and checks that it
is refused or contained in one line, and that nothing around it is lost.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

from bench.hostile import write_amplification_zip, write_non_utf8_folder, write_zip
from ingest.files import printable_path
from ingest.limits import MiB, Limits
from ingest.pipeline import ingest_paths
from ingest.tokenizers import ByteTokenizer


def run(*paths: Path, limits: Limits = Limits()):
    report, stream = ingest_paths(list(paths), ByteTokenizer(), limits=limits)
    return report, stream, {item.path: item.reason for item in report.skipped}


def test_300_entries_of_just_under_1_mib_are_refused_before_expanding(tmp_path: Path, monkeypatch) -> None:
    bomb = write_amplification_zip(tmp_path / "amplify.zip", entries=300, entry_bytes=MiB - 1)
    assert bomb.stat().st_size < MiB and len(zipfile.ZipFile(bomb).infolist()) == 300
    expanded: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: expanded.append(str(name)) or real_open(self, name, *a, **k))
    report, _, reasons = run(bomb)
    assert not report.documents and not expanded  # refused from the central directory alone
    reason = reasons[str(bomb)]
    assert reason.startswith("refused: 300 entries expand to 300.0 MiB") and "limit 100:1" in reason and "\n" not in reason


def test_small_amplifying_entries_padded_with_incompressible_data_are_refused(tmp_path: Path) -> None:
    """Padding lowers the archive's overall ratio; the bytes amplified past the ratio still add up."""
    padding = os.urandom(4 * MiB)
    bomb = write_amplification_zip(tmp_path / "padded.zip", entries=60, entry_bytes=MiB - 1, padding=padding)
    infos = zipfile.ZipFile(bomb).infolist()
    assert sum(i.file_size for i in infos) / bomb.stat().st_size < 100  # the overall ratio alone would pass
    report, _, reasons = run(bomb)
    assert not report.documents
    assert reasons[str(bomb)].startswith("refused: 60 entries expand") and "zip bomb?" in reasons[str(bomb)]


def test_entries_that_overlap_each_other_are_refused(tmp_path: Path) -> None:
    """Each entry claims the same stored 100 KB (ratio 1): together they expand 200-fold."""
    data = os.urandom(100_000)
    bomb = write_zip(tmp_path / "overlap.zip", [(f"f{n:03d}.txt", 0, data, zlib.crc32(data), len(data)) for n in range(200)], overlapping=True)
    report, _, reasons = run(bomb)
    assert not report.documents
    assert reasons[str(bomb)].startswith("refused: a 108.3 KiB archive expands to 19.1 MiB") and "zip bomb?" in reasons[str(bomb)]


def test_a_few_well_compressed_small_files_are_still_read(tmp_path: Path) -> None:
    archive = write_amplification_zip(tmp_path / "fine.zip", entries=3, entry_bytes=64 * 1024)
    report, _, reasons = run(archive)
    assert len(report.documents) == 3 and not reasons


def test_a_non_utf8_file_name_is_read_under_an_escaped_name(tmp_path: Path) -> None:
    folder = write_non_utf8_folder(tmp_path / "names")
    report, stream, reasons = run(folder)
    assert not reasons
    paths = [entry.path for entry in report.documents]
    assert paths == [f"{folder}/a.txt", f"{folder}/caf\\xe9.txt", f"{folder}/z.txt"]
    json.dumps(report.to_dict(), ensure_ascii=False).encode()  # what a corpus saves: valid UTF-8
    assert all(record.path.encode() for record in stream.records)


def test_a_folder_with_a_non_utf8_name_reads_into_a_corpus_again_and_again(tmp_path: Path) -> None:
    """The name once made the corpus's documents file unwritable: every ingest failed."""
    from app.service.corpus_service import CorpusService
    from tests.corpus_helpers import shared_model_dir

    folder = write_non_utf8_folder(tmp_path / "names")
    service = CorpusService(tmp_path / "home", shared_model_dir())
    first = service.ingest([folder], "names")
    assert [entry["path"] for entry in first["documents"]] == [f"{folder}/a.txt", f"{folder}/caf\\xe9.txt", f"{folder}/z.txt"]
    again = service.ingest([folder], "names")
    assert again["complete"] and again["segments_read"] == 0 and again["memory_sha256"] == first["memory_sha256"]


def test_a_non_utf8_top_level_path_is_read_under_an_escaped_name(tmp_path: Path) -> None:
    path = Path(os.fsdecode(bytes(tmp_path) + b"/r\xe9sum\xe9.txt"))
    path.write_text("curriculum vitae\n")
    report, _, reasons = run(path)
    assert not reasons and [entry.path for entry in report.documents] == [f"{tmp_path}/r\\xe9sum\\xe9.txt"]
    assert printable_path("lone \ud800 surrogate") == "lone \\ud800 surrogate"  # not from a file system, still printable


def _make_deep_folder(parent: Path, depth: int, name_length: int = 250) -> None:
    """Nested folders whose full path exceeds PATH_MAX, made relative to open folders
    (a plain mkdir cannot name them), with a file at the bottom."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            name = f"{level:02d}" + "d" * (name_length - 2)
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        bottom = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(bottom, b"very deep\n")
        os.close(bottom)
    finally:
        os.close(fd)


def test_a_path_longer_than_path_max_does_not_make_the_folder_unreadable(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "top.txt").write_text("top level\n")
    (root / "sub").mkdir()
    (root / "sub" / "inner.md").write_text("# inner\n")
    _make_deep_folder(root / "sub", depth=os.pathconf(root, "PC_PATH_MAX") // 250 + 1)
    report, _, reasons = run(root)
    assert [entry.path for entry in report.documents] == [f"{root}/top.txt", f"{root}/sub/inner.md"]
    too_long = [reason for reason in reasons.values() if "too long" in reason]
    assert too_long and all("\n" not in reason for reason in reasons.values())


def test_the_amplification_zip_is_a_valid_archive(tmp_path: Path) -> None:
    """The hand-written archive the tests and `bench.hostile` use reads back with zipfile."""
    archive = write_amplification_zip(tmp_path / "check.zip", entries=2, entry_bytes=1000, padding=b"pad")
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None and [len(opened.read(info)) for info in opened.infolist()] == [1000, 1000, 3]


def test_bench_hostile_prints_one_json_line_and_every_probe_holds(capsys, monkeypatch) -> None:
    import torch

    from bench import hostile
    from tests.corpus_helpers import shared_model_dir

    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", "1")  # restored after main() sets its own
    threads = torch.get_num_threads()
    try:
        assert hostile.main(["--json", "--model", str(shared_model_dir())]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert result["ok"] and set(result["tensor_flips"]["tensors"]) == {"states", "exact", "hashes", "tokens"}
    assert result["zip_amplification"]["refused"] and result["zip_amplification"]["entries_expanded"] == 0
    assert result["non_utf8_name"]["paths"] == ["a.txt", "caf\\xe9.txt", "z.txt"]
