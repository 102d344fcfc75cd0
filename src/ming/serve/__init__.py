"""`ming serve`: an OpenAI-compatible HTTP server and the web consultation page.

    protocol.py  request / response models (pydantic, with limits)
    serving.py   chat completions over the turn pipeline (ming/respond.py), no HTTP
    queue.py     the bounded request queue (Job, Scheduler) in front of the engine
    routes.py    HTTP endpoints (FastAPI) over serving.py
    errors.py    OpenAI-format errors
    settings.py  server settings (one dataclass; the CLI flags are generated from it)
    app.py       build_app(settings, engine) — state on app.state, no module globals
    server.py    uvicorn runner with clean Ctrl-C / SIGTERM shutdown
    static/      the web page (plain HTML / JS / CSS, no build step)
"""
