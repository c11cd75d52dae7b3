"""The rmtqa web UI (Gradio 6), started by `rmtqa serve`: `layout` builds and launches the app,
`handlers` holds its state and event handlers over the corpus service, `formatting` turns the
service's dicts into markdown and HTML, `jobs` runs readings server-wide, `auth` checks logins,
`model_tab` describes the reader.

Gradio's analytics and the hub are turned off here, before any module of the UI imports
gradio: nothing of the UI reaches the internet.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
