"""The appliance's boot, as ordered steps (`python -m entrypoint`, the image's ENTRYPOINT).

    check_environment   every problem at once, one line each; nothing is started on error
    prepare_directories /etc/headscale, /var/lib/headscale, /var/run/headscale under ENTRYPOINT_ROOT
    write_secrets       the Noise key (and the OIDC client secret) into 0600 files
    write_configuration config.yaml, litestream.yml, supervisord.conf from config-templates/
    restore_or_import   IMPORT_DATABASE's one-time import, else `litestream restore` with retries
    supervise           supervisord -n: Litestream first, then the server; FATAL -> exit 1

A failure stops the boot with a non-zero status (Fly restarts the Machine), or idles when
ENTRYPOINT_IDLE=true so that `fly ssh console` can get in.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint import env as envtable
from entrypoint import importer, litestream, supervise
from entrypoint.command import argv_for
from entrypoint.env import InvalidEnvironment, Settings
from entrypoint.layout import IMPORT_MARKER, Paths, Tools
from entrypoint.render import Rendered, mask, render

log = logging.getLogger("entrypoint")


class BootStopped(Exception):
    """A step found a problem that no restart of the server could fix."""


class SignalledDuringBoot(BaseException):
    """SIGTERM/SIGINT before supervisord runs (also as PID 1, where the default is to ignore it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_boot(signum: int, frame: object) -> None:
    raise SignalledDuringBoot(signum)


@dataclass(frozen=True)
class Boot:
    settings: Settings
    paths: Paths
    tools: Tools
    environ: Mapping[str, str]


# --------------------------------------------------------------------------- steps


def check_environment(environ: Mapping[str, str], tools: Tools) -> Settings:
    for name in envtable.unknown_variables(environ):
        log.warning("%s is not a variable this appliance knows (typo?); it is ignored", name)
    for line in envtable.retired_variables(environ):
        log.warning("%s", line)
    problems: list[str] = []
    try:
        settings = envtable.validate(environ)
    except InvalidEnvironment as error:
        problems += error.problems
        settings = None
    wanted = [tools.supervisord] + ([tools.litestream] if settings is None or settings.litestream else [])
    for program in wanted:
        if not Path(program).is_file() or not os.access(program, os.X_OK):
            problems.append(f"program not found or not executable: {program}")
    if problems:
        raise InvalidEnvironment(problems)
    assert settings is not None
    if environ.get("HEADSCALE_SERVER_URL") is None and not environ.get("HEADSCALE_DOMAIN_NAME"):
        log.info("server URL: %s (default from FLY_APP_NAME)", settings.server_url)
    else:
        log.info("server URL: %s", settings.server_url)
    return settings


def prepare_directories(paths: Paths) -> None:
    for directory in paths.directories():
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.data_dir, 0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_secrets(settings: Settings, paths: Paths) -> None:
    _write_private(paths.noise_key, settings["NOISE_PRIVATE_KEY"].strip() + "\n")
    if settings.oidc:
        _write_private(paths.oidc_secret, settings["HEADSCALE_OIDC_CLIENT_SECRET"].strip() + "\n")
    else:
        paths.oidc_secret.unlink(missing_ok=True)
    # DATABASE_URL's password for libpq, in the server's $HOME (0600, as libpq insists).
    pgpass = paths.data_dir / ".pgpass"
    if settings.postgres is not None and settings.postgres["password"]:
        escaped = settings.postgres["password"].replace("\\", "\\\\").replace(":", "\\:")
        _write_private(pgpass, f"*:*:*:*:{escaped}\n")
    else:
        pgpass.unlink(missing_ok=True)


def write_configuration(settings: Settings, paths: Paths, tools: Tools) -> Rendered:
    rendered = render(settings, paths, tools)
    for path, text in rendered.files(paths).items():
        path.write_text(text)
        os.chmod(path, 0o644)
    if settings.debug:
        for path, text in rendered.files(paths).items():
            print(f"----- ENTRYPOINT_DEBUG: {path} -----\n{mask(text, settings.secrets)}", flush=True)
        shown = {v.name: ("********" if v.secret and settings[v.name] else settings[v.name])
                 for v in envtable.VARIABLES}
        print("----- ENTRYPOINT_DEBUG: environment -----", flush=True)
        for name, value in shown.items():
            print(f"{name}={value}", flush=True)
    return rendered


def restore_or_import(boot: Boot) -> importer.ImportSource | None:
    """Returns the import source when a database was imported (the marker is written later)."""
    settings, paths = boot.settings, boot.paths
    if settings.import_database:
        client = importer.s3_client(settings)
        try:
            source = importer.find_source(client, settings["BUCKET_NAME"])
            if source is not None:
                tmp = importer.download(client, settings["BUCKET_NAME"], paths, source)
                importer.put_in_place(tmp, paths)
                log.info("imported %s into %s instead of restoring the replica", importer.IMPORT_OBJECT, paths.db)
                if not settings.litestream:
                    log.warning("LITESTREAM_ENABLED=false: the import is not recorded and runs again at every boot")
                return source
        except importer.ImportFailed as error:
            raise BootStopped(f"import stopped the boot: {error}") from error
    if not settings.litestream:
        return None
    try:
        result = litestream.restore(boot.tools, paths, boot.environ,
                                    attempts=int(settings["LITESTREAM_RESTORE_ATTEMPTS"]))
    except litestream.RestoreFailed as error:
        raise BootStopped(f"{error}; the server is not started on an empty database while a replica may exist")\
            from error
    if result.restored:
        log.info("restored %s from the replica in %.2fs (%d attempt(s))", paths.db, result.seconds, result.attempts)
    elif paths.db.exists():
        log.info("kept the existing local database %s", paths.db)
    else:
        log.info("no replica in the bucket yet: starting with a new database")
    return None


def record_import_when_replicated(boot: Boot, source: importer.ImportSource):
    """Thread body: once Litestream uploaded the imported database, write the marker object."""
    def watch(stopped: threading.Event) -> None:
        client = importer.s3_client(boot.settings)
        bucket = boot.settings["BUCKET_NAME"]
        while not stopped.is_set():
            generation = litestream.current_generation(boot.paths)
            try:
                if generation and importer.generation_uploaded(client, bucket, generation):
                    importer.record_import(client, bucket, source, generation)
                    log.info("import recorded in s3://%s/%s (ETag %s, generation %s): later boots with "
                             "IMPORT_DATABASE=true will not import it again", bucket, IMPORT_MARKER,
                             source.etag, generation)
                    return
            except Exception as error:  # noqa: BLE001 - an S3 hiccup: keep trying until replicated or stopped
                log.warning("could not check or record the import yet: %s", error)
            stopped.wait(0.5)
        log.warning("stopped before the imported database was replicated: it will be imported again next boot")

    return watch


def supervise_programs(boot: Boot, imported: importer.ImportSource | None) -> int:
    if boot.settings.postgres is not None:
        log.info("database: PostgreSQL %s@%s/%s (DATABASE_URL); this Machine serves when it holds the "
                 "lease, else stands by", boot.settings.postgres["user"], boot.settings.postgres["host"],
                 boot.settings.postgres["name"])
    elif not boot.settings.litestream:
        for line in (
            "!" * 72,
            "LITESTREAM_ENABLED=false: the database is NOT replicated.",
            "Every restart, deploy or `fly secrets set` starts with an EMPTY database:",
            "users, nodes and keys will be lost. Use this only for testing.",
            "!" * 72,
        ):
            log.warning(line)
    watcher = None
    if imported is not None and boot.settings.litestream:
        watcher = record_import_when_replicated(boot, imported)
    return supervise.run(boot.tools, boot.paths, boot.environ, watcher)


# --------------------------------------------------------------------------- main


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s entrypoint: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(environ: Mapping[str, str] | None = None, tools: Tools | None = None) -> int:
    configure_logging()
    started = time.monotonic()
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault("PYTHONUNBUFFERED", "1")
    tools = tools or Tools.find()
    paths = Paths.under(environ.get("ENTRYPOINT_ROOT") or "/")
    idle_on_error = envtable.as_bool(environ.get("ENTRYPOINT_IDLE", ""))
    for signum in supervise.FORWARDED:
        signal.signal(signum, _stop_boot)
    try:
        settings = check_environment(environ, tools)
        boot = Boot(settings, paths, tools, environ)
        prepare_directories(paths)
        write_secrets(settings, paths)
        write_configuration(settings, paths, tools)
        imported = restore_or_import(boot)
        if settings.idle:
            return supervise.idle(0)
        log.info("boot steps done in %.2fs; starting supervisord", time.monotonic() - started)
        return supervise_programs(boot, imported)  # replaces the boot-time signal handlers first
    except InvalidEnvironment as error:
        for problem in error.problems:
            log.error("%s", problem)
        log.error("boot stopped: %d problem(s) in the environment; nothing was started", len(error.problems))
        return supervise.idle(1) if idle_on_error else 1
    except BootStopped as error:
        log.error("%s", error)
        log.error("boot stopped: nothing was started and the bucket was not written")
        return supervise.idle(1) if idle_on_error else 1
    except SignalledDuringBoot as stop:
        log.warning("received %s during the boot steps: stopping before anything was started",
                    signal.Signals(stop.signum).name)
        return 128 + stop.signum


def run(argv: list[str]) -> int:
    """The image's ENTRYPOINT: the appliance boot, or the command the container was given."""
    command = argv_for(argv)
    if command is None:
        return main()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"entrypoint: cannot run {command[0]!r}: {error.strerror}. With no command the image boots "
              "the appliance; `serve` or any `headscale` command runs that command.", file=sys.stderr)
        return 127


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
