"""What a command handler gets: parsed flags, output helpers, config and API client (lazy)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from app.cli import output
from app.cli.client import ApiClient, CliError
from app.config import Config, ConfigError, dev_config, load_config

# Keys the client itself needs; a problem with one of them stops every remote command.
CLIENT_KEYS = ("unix_socket", "cli.")
DEV_DATA_DIR = "data"  # `make run` / `headscale serve --dev` keep everything here


class Context:
    def __init__(
        self,
        args: argparse.Namespace,
        *,
        env: Mapping[str, str] | None = None,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        now: Callable[[], datetime] | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.args = args
        self.argv = list(argv or [])
        self.env = os.environ if env is None else env
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.now = now or (lambda: datetime.now(UTC))
        self.output: str = getattr(args, "output", "") or ""
        self.force: bool = bool(getattr(args, "force", False))
        self._config: Config | None = None
        self._client: ApiClient | None = None

    # --- config and client --------------------------------------------------------------------

    def config(self) -> Config:
        """The config as the CLI needs it: server-side problems are not the CLI's business."""
        if self._config is None:
            try:
                if getattr(self.args, "dev", False):
                    cfg = dev_config(os.path.abspath(DEV_DATA_DIR))
                else:
                    cfg = load_config(getattr(self.args, "config", None) or None, self.env, validate=False)
            except ConfigError as e:
                raise CliError("loading configuration: " + "; ".join(e.problems)) from None
            mine = [p for p in cfg.problems if p.startswith(CLIENT_KEYS)]
            if mine:
                raise CliError("loading configuration: " + "; ".join(mine))
            self._config = cfg
        return self._config

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient.from_config(self.config())
        return self._client

    # --- output -------------------------------------------------------------------------------

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def emit(self, result: Any, human: str) -> None:
        """Machine output of ``result``, or the human ``text``."""
        self.print(output.dump(result, self.output) if self.output else human)

    def print_machine(self, obj: Any, default: str = "json") -> None:
        self.print(output.dump(obj, self.output or default))

    def emit_list(self, items: list, headers: list[str], row: Callable[[Any], list[str]]) -> None:
        if self.output:
            self.print(output.dump(items, self.output))
        else:
            self.print(output.table(headers, [row(i) for i in items]))

    def warn(self, text: str) -> None:
        if not self.output:
            self.stderr.write(text + "\n")

    def error(self, message: str) -> None:
        """``Error: message`` on stderr; with -o, the same as {"error": message} in that format."""
        if self.output:
            self.stderr.write(output.dump({"error": message}, self.output) + "\n")
        else:
            self.stderr.write(f"Error: {message}\n")

    def confirm(self, prompt: str) -> bool:
        """Ask on stderr, read y/yes from stdin; --force answers yes. No answer means no."""
        if self.force:
            return True
        self.stderr.write(f"{prompt} [y/n] ")
        self.stderr.flush()
        answer = self.stdin.readline()
        if not _isatty(self.stdin):  # the answer was not typed: end the prompt line ourselves
            self.stderr.write("\n")
        return answer.strip().lower() in ("y", "yes")


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
