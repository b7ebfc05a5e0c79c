"""Gunicorn serving a service's application, configured in code rather than by CLI or file.

Imported only by serve(): gunicorn parses WEB_CONCURRENCY when imported.
"""

from collections.abc import Callable

from gunicorn.app.base import BaseApplication

from service_runtime.spec import WSGIApp


class GunicornApplication(BaseApplication):
    def __init__(self, app_factory: Callable[[], WSGIApp], *, bind: str, workers: int) -> None:
        self._app_factory = app_factory
        # Set before super().__init__(), which calls load_config().
        self._options = {
            "bind": bind,
            "workers": workers,
            "accesslog": "-",
            # worker_tmp_dir is left unset on purpose: tempfile's default (TMPDIR,
            # else /tmp) is the tmpfs mounted over the container's read-only root.
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)
        # gunicorn >= 25.1 opens a control socket under $HOME, which is read-only
        # in the container; nothing uses gunicornc, so skip it instead of warning.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> WSGIApp:
        return self._app_factory()
