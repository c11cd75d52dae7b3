"""Corpora on disk under `$RMTQA_HOME`: the format (`format`), the store and its one writer per
corpus (`store`, `lock`), read-only snapshots checked file by file (`snapshot`), where each
token came from (`documents`), staged uploads (`uploads`) and chat history (`chat_history`)."""
