"""The corpus service both front ends (CLI and web UI) call: `corpus_service.CorpusService`,
built from `corpora` (corpora and their models), `ingesting` (reading) and `asking` (answers,
sources, passages); `qa_runnable` offers it as a LangChain Runnable."""
