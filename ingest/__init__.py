"""Books, PDFs, code repositories and archives -> one ordered token stream with provenance.

Entry point: `ingest.pipeline.ingest_paths(paths, tokenizer) -> (IngestReport, CorpusStream)`.
Modules: `sources` (paths -> Documents, by type), loaders `pdf`, `text`, `html`, `epub`,
`word` (langchain `BaseLoader`s, see `documents` for the metadata contract), `walk` and `archive`
(folders, repositories, zips), `ocr` (scanned PDF pages, optional), `order` (definitions
before uses), `stream` (tokens, segments, provenance), `report` (what happened to every
file), `limits` (safety caps).
"""
