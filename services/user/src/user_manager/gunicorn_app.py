"""Gunicorn serving create_app(), configured in code rather than by CLI or file."""

from gunicorn.app.base import BaseApplication

from user_manager import create_app


class GunicornApplication(BaseApplication):
    def __init__(self, *, bind: str, workers: int) -> None:
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

    def load(self):
        return create_app()
