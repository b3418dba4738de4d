"""Where the active policy comes from: a file (``policy.mode: file``) or the database.

A rejected policy never replaces the active one: the text is parsed, compiled against the
current users and nodes, and its tests run, before anything is stored or installed.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from app.core.policy.legacy import is_yaml_name, yaml_to_json
from app.service.errors import Invalid
from app.service.state import State

log = logging.getLogger("headscale.policy")


def _policy_error(exc: Exception) -> Invalid:
    # headscale wraps every rejection in "parsing HuJSON:" (syntax) or "parsing policy from
    # bytes:" (everything else); admin UIs such as Headplane show those inline, so keep them.
    text = str(exc)
    if "parsing HuJSON:" not in text:
        text = f"parsing policy from bytes: {text}"
    return Invalid(f"policy rejected: {text}")


class PolicyService:
    def __init__(self, state: State, mode: str, path: str = "") -> None:
        self.state = state
        self.mode = mode
        self.path = path
        self._file_stamp: tuple[float, int] | None = None

    async def load(self) -> None:
        """Install the stored/file policy at start; a broken one stops the start."""
        if self.mode == "file":
            text = self._read_file()
            await self._install(text, None)
        else:
            row = await self.state.db.get_policy()
            if row is not None:
                await self._install(row[0], row[1])

    def _read_file(self) -> str | None:
        if not self.path:
            return None
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        st = os.stat(self.path)
        self._file_stamp = (st.st_mtime, st.st_size)
        if is_yaml_name(self.path):  # headscale 0.22 read .yaml/.yml policies as YAML
            try:
                text = yaml_to_json(text)
            except ValueError as exc:
                raise Invalid(f"policy rejected: {self.path}: {exc}") from None
        return text

    async def _install(self, text: str | None, updated: datetime | None) -> None:
        try:
            await self.state.load_policy(text, updated)
        except Exception as exc:
            if type(exc).__name__ == "PolicyError":
                raise _policy_error(exc) from None
            raise
        for warning in getattr(self.state.policy, "warnings", ()):
            log.warning("policy: %s", warning)

    def check(self, text: str) -> None:
        try:
            self.state.check_policy(text)
        except Exception as exc:
            if type(exc).__name__ == "PolicyError":
                raise _policy_error(exc) from None
            raise

    async def get(self) -> tuple[str, datetime | None] | None:
        if self.mode == "file":
            text = self.state.policy_source
            return (text, None) if text is not None else None
        return await self.state.db.get_policy()

    async def set(self, text: str) -> tuple[str, datetime | None]:
        if self.mode != "database":
            raise Invalid("update is disabled for modes other than 'database' (policy.mode is file): "
                          "edit the policy file; the server reloads it on change or SIGHUP")
        self.check(text)
        async with self.state.lock:
            _, updated = await self.state.db.set_policy(text)
        await self._install(text, updated)
        return text, updated

    async def reload(self) -> bool:
        """SIGHUP / file watch: re-read the file; keep the old policy if the new one fails."""
        if self.mode != "file" or not self.path:
            return False
        try:
            text = self._read_file()
            await self._install(text, None)
            log.info("policy reloaded from %s", self.path)
            return True
        except Exception as exc:  # noqa: BLE001 - a bad file must never replace the active policy
            log.error("policy reload failed, keeping the active policy: %s", exc)
            return False

    def file_changed(self) -> bool:
        if self.mode != "file" or not self.path:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_mtime, st.st_size) != self._file_stamp
