"""Run an app under uvicorn with a clean Ctrl-C / SIGTERM: stop accepting, let running answers finish
for `shutdown_timeout` seconds, then cancel them (each stream ends properly with `[DONE]`), then exit 0.
A second Ctrl-C cancels at once."""

from __future__ import annotations

import contextlib
import signal
import threading

import uvicorn


class MingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, scheduler, shutdown_timeout: float = 5.0):
        super().__init__(config)
        self.scheduler = scheduler
        self.shutdown_timeout = shutdown_timeout
        self.stop_signal: int | None = None

    def handle_exit(self, sig: int, frame) -> None:
        first = self.stop_signal is None
        self.stop_signal = sig
        super().handle_exit(sig, frame)
        if first:
            timer = threading.Timer(self.shutdown_timeout, self.scheduler.cancel_all)
            timer.daemon = True
            timer.start()
        else:
            self.scheduler.cancel_all()

    @contextlib.contextmanager
    def capture_signals(self):
        # as uvicorn's, but without re-raising the signal afterwards: the shutdown was clean, exit 0
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def make_server(app, host: str, port: int, log_level: str = "info", access_log: bool = True) -> MingServer:
    settings = app.state.settings
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                            timeout_graceful_shutdown=int(settings.shutdown_timeout) + 10, lifespan="on")
    return MingServer(config, app.state.scheduler, settings.shutdown_timeout)
