"""Commands that work without a server (version, configtest, generate, dumpConfig) plus
``health`` and the ``serve`` placeholder."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any

from app import __version__
from app.cli import hooks
from app.cli.client import CliError
from app.cli.commands.common import add_parser, group
from app.cli.context import DEV_DATA_DIR
from app.config import ConfigError, dev_config, load_config
from app.core.keys import PRIVATE, format_key, new_private

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = add_parser(sub, "serve", common, "Launches the headscale server")
    p.set_defaults(func=serve)

    p = add_parser(sub, "version", common, "Print the version.")
    p.set_defaults(func=version)

    p = add_parser(sub, "configtest", common, "Test the configuration.",
                   description="Load and validate the configuration, list every problem and exit.")
    p.set_defaults(func=configtest)

    p = add_parser(sub, "health", common, "Check the health of the Headscale server",
                   description="Exit status 0 if the server and its database are healthy, 1 if not.")
    p.set_defaults(func=health)

    gen = group(sub, "generate", common, "Generate commands", aliases=("gen",))
    p = add_parser(gen, "private-key", common, "Generate a private key for the headscale server")
    p.set_defaults(func=generate_private_key)

    p = add_parser(sub, "dumpConfig", common, "Print the effective configuration (secrets masked)")
    p.set_defaults(func=dump_config)


def version_info() -> dict:
    """Same shape as headscale's VersionInfo; ``go`` describes the Python runtime here."""
    return {
        "version": __version__,
        "commit": "unknown",
        "buildTime": "unknown",
        "go": {"version": f"python{platform.python_version()}", "os": sys.platform,
               "arch": _ARCH.get(platform.machine().lower(), platform.machine().lower())},
        "dirty": False,
    }


def version(ctx: Any, args: argparse.Namespace) -> int:
    info = version_info()
    human = (f"headscale version {info['version']} (pyheadscale)\n"
             f"commit: {info['commit']}\n"
             f"build time: {info['buildTime']}\n"
             f"built with: {info['go']['version']} {info['go']['os']}/{info['go']['arch']}")
    ctx.emit(info, human)
    return 0


def configtest(ctx: Any, args: argparse.Namespace) -> int:
    path = getattr(args, "config", None) or None
    try:
        cfg = dev_config(os.path.abspath(DEV_DATA_DIR)) if args.dev else load_config(path, ctx.env)
    except ConfigError as e:
        if ctx.output:
            ctx.print_machine({"valid": False, "path": path, "problems": e.problems, "warnings": e.warnings})
        else:
            for w in e.warnings:
                ctx.stderr.write(f"Warning: {w}\n")
            n = len(e.problems)
            ctx.stderr.write(f"Error: invalid configuration ({n} problem{'s' if n != 1 else ''}):\n")
            for p in e.problems:
                ctx.stderr.write(f"  - {p}\n")
        return 1
    if ctx.output:
        ctx.print_machine({"valid": True, "path": cfg.source_path, "problems": [], "warnings": list(cfg.warnings)})
    else:
        for w in cfg.warnings:
            ctx.stderr.write(f"Warning: {w}\n")
        where = ("embedded development configuration" if args.dev
                 else cfg.source_path or "no config file: defaults and environment")
        ctx.print(f"Configuration is valid ({where})")
    return 0


def health(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().get("/api/v1/health")
    ok = bool(resp.get("databaseConnectivity"))
    ctx.emit(resp, "Server is healthy" if ok else "Server is unhealthy: no database connectivity")
    return 0 if ok else 1


def generate_private_key(ctx: Any, args: argparse.Namespace) -> int:
    key = format_key(new_private(), PRIVATE)
    ctx.emit({"private_key": key}, key)
    return 0


def dump_config(ctx: Any, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    ctx.print_machine(cfg.as_dict(masked=True), default="yaml")
    return 0


def serve(ctx: Any, args: argparse.Namespace) -> int:
    if hooks.serve is None:
        raise CliError("'serve' is started by the headscale entry point (app.main); "
                       "run `headscale serve` with serve as the first argument")
    return hooks.serve(list(ctx.argv))
