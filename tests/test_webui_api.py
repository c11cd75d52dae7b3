"""The web UI's named API (/ingest, /ask, /corpora) through gradio_client, plus the pieces of
`rmtqa serve` and the Model tab that need no server."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest

from tests.corpus_helpers import book_lines, write_pdf
from tests.webui_helpers import MAX_UPLOAD_MB, SHARED_DATA, running_server

# Gradio's queue summarises its own event timings with pandas, which warns on pandas 3.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")
REAL_PDF = SHARED_DATA / "pdf-samples" / "001-trivial" / "minimal-document.pdf"


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    server = running_server()
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False)


def ingest(client, files, corpus):
    from gradio_client import handle_file

    return client.predict(files=[handle_file(str(f)) for f in files], corpus=corpus, api_name="/ingest")


def test_api_lists_only_the_named_endpoints(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/ingest", "/ask", "/corpora", "/jobs", "/cancel"}
    assert api["named_endpoints"]["/ask"]["parameters"][0]["example_input"] == "my-docs"  # a valid corpus name
    params = [p["parameter_name"] for p in api["named_endpoints"]["/ingest"]["parameters"]]
    assert params == ["files", "corpus"]
    params = api["named_endpoints"]["/ask"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["corpus", "question", "as_of", "mode"] and params[2]["parameter_has_default"] and params[3]["parameter_has_default"]


def test_ingest_then_ask_with_sources(client, tmp_path) -> None:
    pdf = write_pdf(tmp_path / "report.pdf", [book_lines(6, seed=1), book_lines(6, seed=2)])
    files = [pdf] + ([REAL_PDF] if REAL_PDF.is_file() else [])
    from gradio.utils import get_upload_folder

    report = ingest(client, files, "api-docs")
    assert report["corpus"] == "api-docs" and report["complete"] and not report["cancelled"]
    assert [d["file"] for d in report["documents"]] == [f.name for f in files]  # as uploaded, no server path
    assert not list(Path(get_upload_folder()).rglob("report.pdf"))  # Gradio's cached copy is gone
    assert report["documents"][0]["pages"] == 2 and report["skipped"] == []
    assert report["segments_read"] == report["segments"] > 0 and "message" in report

    result = client.predict(corpus="api-docs", question="Where did the ship sail?", api_name="/ask")
    assert isinstance(result["answer"], str) and isinstance(result["sources"], list)
    for source in result["sources"]:
        assert {"file", "page", "lines", "excerpt", "score"} <= set(source)
        assert isinstance(source["page"], int) and source["page"] >= 1  # every document here is a PDF
    assert result["mode"] in ("fast", "reread") and result["mode_reason"]  # auto: the output says which ran and why
    fast = client.predict(corpus="api-docs", question="Where did the ship sail?", mode="fast", api_name="/ask")
    assert fast["mode"] == "fast" and "mode_reason" not in fast
    as_of = client.predict(corpus="api-docs", question="Where?", as_of="report.pdf#page=1", api_name="/ask")
    assert as_of["as_of"] == "report.pdf#page=1" and 1 <= as_of["segment"] <= result["segment"]

    corpora = client.predict(api_name="/corpora")
    listed = {c["name"]: c for c in corpora}
    assert listed["api-docs"]["documents"] == len(files) and listed["api-docs"]["state"] == "complete"
    home = str(running_server().home)
    for response in (report, result, as_of, corpora, client.predict(api_name="/jobs")):
        assert home not in json.dumps(response)  # no server path in any response
    assert listed["api-docs"]["model"] == "model"


def test_bad_upload_has_a_clear_message_and_the_corpus_stays_usable(client, tmp_path) -> None:
    from gradio_client.exceptions import AppError

    good = write_pdf(tmp_path / "good.pdf", [book_lines(5, seed=3)])
    before = ingest(client, [good], "api-bad")
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(os.urandom(4096))

    report = ingest(client, [bad], "api-bad")  # added to a corpus that has a good file
    assert [(Path(s["file"]).name, s["reason"].split(":")[0]) for s in report["skipped"]] == [("scan.pdf", "damaged or not a PDF")]
    assert "skipped: scan.pdf: damaged or not a PDF" in report["message"]
    assert report["complete"] and report["segments_read"] == 0 and report["memory_sha256"] == before["memory_sha256"]
    answer = client.predict(corpus="api-bad", question="Who wrote letters?", api_name="/ask")
    assert isinstance(answer["answer"], str)

    with pytest.raises(AppError, match=r"nothing readable to put in corpus api-new \(scan.pdf: damaged or not a PDF"):
        ingest(client, [bad], "api-new")  # only the bad file: no corpus is created
    names = [c["name"] for c in client.predict(api_name="/corpora")]
    assert "api-new" not in names and "api-bad" in names
    assert not (running_server().home / "uploads" / "api-new").exists()


def test_zip_upload_and_a_folder_on_the_server(client, tmp_path) -> None:
    import zipfile

    from app.webui.handlers import WebUI
    from app.webui.jobs import UploadError

    archive = tmp_path / "letters.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("letters/one.txt", "\n".join(book_lines(20, seed=11)) + "\n")
        zf.writestr("letters/two.txt", "\n".join(book_lines(20, seed=12)) + "\n")
    report = ingest(client, [archive], "api-zip")
    assert report["complete"] and [d["file"].rsplit("/", 1)[-1] for d in report["documents"]] == ["one.txt", "two.txt"]

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("# Notes\n\n" + "\n".join(book_lines(10, seed=13)) + "\n")
    (folder / "main.py").write_text("def main():\n    return 42\n")
    ui = running_server().ui
    job = ui._begin(None, str(folder), "api-folder")  # the Upload tab's folder field
    assert job.done.wait(120) and job.error is None and job.report["complete"]
    assert sorted(Path(d["path"]).name for d in job.report["documents"]) == ["README.md", "main.py"]
    with pytest.raises(UploadError, match="reading folders on the server is turned off"):
        WebUI(ui.service, local_paths=False)._begin(None, str(folder), "api-folder")
    with pytest.raises(UploadError, match="no file or folder"):
        ui._begin(None, str(tmp_path / "missing"), "api-folder")


def test_user_errors_are_clear(client, tmp_path) -> None:
    from gradio_client.exceptions import AppError

    small = write_pdf(tmp_path / "a.pdf", [book_lines(3, seed=4)])
    with pytest.raises(AppError, match="no corpus named nope"):
        client.predict(corpus="nope", question="What?", api_name="/ask")
    with pytest.raises(AppError, match="invalid corpus name"):
        ingest(client, [small], "../etc")
    with pytest.raises(AppError, match="name the corpus"):
        ingest(client, [small], " ")
    with pytest.raises(AppError, match="choose files to upload"):
        client.predict(files=[], corpus="empty", api_name="/ingest")
    started = time.perf_counter()
    with pytest.raises(AppError, match=r"the question is too long \(78,000 characters\); the limit is 256 tokens"):
        client.predict(corpus="api-docs", question="w" * 78_000, api_name="/ask")
    assert time.perf_counter() - started < 1.0
    with pytest.raises(AppError, match="no reading of corpus nope is queued or running"):
        client.predict(corpus="nope", api_name="/cancel")


def test_upload_over_the_size_cap(client, tmp_path) -> None:
    """One file over the cap is refused at upload; several under it but over it together by
    the handler; both say what the limit is."""
    from gradio_client.exceptions import AppError

    cap = int(MAX_UPLOAD_MB * (1 << 20))
    big = tmp_path / "big.txt"
    big.write_text("word " * (cap // 5 + 100))
    with pytest.raises(Exception, match=f"exceeds the maximum file size of {cap} bytes"):
        ingest(client, [big], "api-big")
    halves = []
    for i in range(2):
        path = tmp_path / f"half{i}.txt"
        path.write_text("word " * int(0.6 * cap / 5))
        halves.append(path)
    with pytest.raises(AppError, match=r"the upload is 1\.2 MB; the limit is 1 MB per upload"):
        ingest(client, halves, "api-big")
    assert "api-big" not in [c["name"] for c in client.predict(api_name="/corpora")]


def test_reading_in_the_background_asking_meanwhile_cancel_and_continue(client, tmp_path, monkeypatch) -> None:
    """/ingest runs in Gradio's queue; /ask answers (from the saved segments) while it runs;
    Cancel keeps what was read; Read with no files continues from there."""
    from gradio_client import handle_file

    from app.webui.jobs import ReadingJob

    ui = running_server().ui
    progress = ReadingJob.on_progress

    def slow(self, event):  # ~0.1 s per segment, so the reading is still going when the answer comes
        progress(self, event)
        time.sleep(0.1)

    monkeypatch.setattr(ReadingJob, "on_progress", slow)
    text = tmp_path / "long.txt"
    text.write_text("\n".join(book_lines(800, seed=9)) + "\n")
    pending = client.submit(files=[handle_file(str(text))], corpus="api-cancel", api_name="/ingest")
    deadline = time.time() + 120
    while time.time() < deadline and not (ui.service.store.exists("api-cancel") and ui.service.corpus("api-cancel")["segments_saved"]):
        time.sleep(0.1)
    answer = client.predict(corpus="api-cancel", question="Who wrote letters?", api_name="/ask")
    assert isinstance(answer["answer"], str) and not answer["complete"] and answer["segment"] < answer["segments"] - 1
    assert ui.jobs.running("api-cancel") is not None  # the answer came while reading went on
    assert any(row[0] == "api-cancel" and row[-1].startswith("being read") for row in ui.corpora_rows())
    jobs = {job["corpus"]: job for job in client.predict(api_name="/jobs")}
    assert jobs["api-cancel"]["state"] == "reading" and jobs["api-cancel"]["files"] == ["long.txt"]

    from gradio_client import Client

    other = Client(running_server().url, verbose=False, analytics_enabled=False, download_files=False)
    assert other.predict(corpus="api-cancel", api_name="/cancel")["state"] == "cancelling"  # not the client that started it
    report = pending.result(timeout=120)
    assert report["cancelled"] and not report["complete"] and 0 < report["segments_read"] < report["segments"]
    monkeypatch.undo()
    assert any(row[0] == "api-cancel" and row[-1].startswith("partly read") for row in ui.corpora_rows())
    again = ui._begin(None, None, "api-cancel")  # Read with the corpus and no files
    assert again.done.wait(120) and again.error is None and again.report["complete"]
    assert again.report["first_segment_read"] == report["first_segment_read"] + report["segments_read"]


# ----------------------------------------------------------------- no server needed


def test_serve_defaults_and_warnings(monkeypatch, tmp_path, capsys) -> None:
    from app.cli.commands import serve
    from app.cli.errors import UserError
    from app.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.share, args.auth, args.model) == ("127.0.0.1", 7860, False, None, None)
    assert serve.exposure_warnings("127.0.0.1", False, None) == []
    wide = serve.exposure_warnings("0.0.0.0", False, None)
    assert any("reachable from other machines" in w for w in wide) and any("no login" in w for w in wide)
    assert any("can be called by any HTTP client" in w for w in wide)  # not only through the page
    assert any("public gradio.live link" in w for w in serve.exposure_warnings("127.0.0.1", True, ("u", "p")))
    assert any("`ps` shows it" in w for w in serve.exposure_warnings("127.0.0.1", False, ("u", "p"), auth_in_argv=True))
    with pytest.raises(UserError, match="USER:PASSWORD"):
        serve.run(build_parser().parse_args(["serve", "--auth", "nopassword"]))

    launched = {}

    def fake_launch(demo, **kwargs):
        launched.update(kwargs, local_paths=demo.rmtqa.local_paths)
        return None, "http://0.0.0.0:7860/", None

    monkeypatch.setattr("app.webui.layout.launch_app", fake_launch)
    monkeypatch.setattr("gradio.Blocks.block_thread", lambda self: None)
    monkeypatch.setenv("RMTQA_HOME", str(tmp_path / "home"))
    secret = tmp_path / "login"
    secret.write_text("u:p\n")
    code = serve.run(build_parser().parse_args(["serve", "--host", "0.0.0.0", "--auth-file", str(secret), "--max-upload-mb", "5"]))
    err = capsys.readouterr().err
    assert code == 0 and "rmtqa: warning: binding 0.0.0.0" in err and "no login" not in err and "`ps`" not in err
    assert "the UI is at http://127.0.0.1:7860/" in err
    assert launched["host"] == "0.0.0.0" and launched["max_upload_mb"] == 5
    import asyncio

    assert asyncio.run(launched["auth"]("u", "p")) and not asyncio.run(launched["auth"]("u", "x"))  # the throttled check
    assert launched["local_paths"] is False  # no server folders for a UI others can reach
    monkeypatch.setenv("RMTQA_AUTH", "env:pw")
    assert serve.run(build_parser().parse_args(["serve"])) == 0 and asyncio.run(launched["auth"]("env", "pw"))
    from app.paths import default_model_dir
    from app.webui.model_tab import has_weights

    assert ("no model is shipped yet" in err) == (not has_weights(default_model_dir()))


def test_model_texts(tmp_path) -> None:
    from app.webui.model_tab import model_card, plain_summary

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No model is shipped yet" in plain_summary(empty)
    assert "No model card" in model_card(empty) and "No evaluation report" in model_card(empty)

    model = tmp_path / "reader"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    (model / "MODEL_CARD.md").write_text("# Reader\n\nTrained on qa1.")
    (model / "train_config.json").write_text(json.dumps({"tasks": ["qa1"]}))
    report = {"task": "qa1", "split": "val", "results": [{"length": 1000, "accuracy": 0.95, "n": 50, "tokens_per_s": 9000},
                                                          {"length": 16000, "accuracy": 0.5, "n": 50, "tokens_per_s": 8000}],
              "baselines": {"last_segment": [{"length": 1000, "accuracy": 0.3}, {"length": 16000, "accuracy": 0.1}]}}
    (model / "eval").mkdir()
    (model / "eval" / "qa1.json").write_text(json.dumps(report))
    (model / "eval" / "partial.json").write_text("")  # an evaluation still being written
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(model / "eval" / "qa1.png")
    summary = plain_summary(model)
    assert "Where is Mary?" in summary and "95% at 1k tokens (n = 50), 50% at 16k tokens (n = 50)" in summary
    assert "not** trained on contracts" in summary
    card = model_card(model)
    assert "Trained on qa1." in card and "| 16k tokens | **50%** | 10% | 50 | 8,000 |" in card and "eval/qa1.json" in card

    from app.service.corpus_service import CorpusService
    from app.webui.handlers import WebUI

    text, images = WebUI(CorpusService(tmp_path / "home", model)).model_view()
    assert text == card and [caption for _, caption in images] == ["eval/qa1.png"] and images[0][0].size == (8, 8)
