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
                   description="Load and validate the configuration, the policy file and the DERP "
                               "map files; list every problem and exit.")
    p.add_argument("--migrate", action="store_true",
                   help="print the config file rewritten in today's keys (older headscale keys "
                        "such as ip_prefixes, db_path, dns_config, acl_policy_path replaced)")
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
    if getattr(args, "migrate", False):
        return _migrate(ctx, path)
    problems: list[str] = []
    warnings: list[str] = []
    try:
        cfg = dev_config(os.path.abspath(DEV_DATA_DIR)) if args.dev else load_config(path, ctx.env)
    except ConfigError as e:
        problems, warnings, cfg = list(e.problems), list(e.warnings), None
    else:
        warnings = list(cfg.warnings)
        file_problems, file_warnings = check_files(cfg)
        problems += file_problems
        warnings += file_warnings
    if ctx.output:
        ctx.print_machine({"valid": not problems, "path": cfg.source_path if cfg else path,
                           "problems": problems, "warnings": warnings})
        return 1 if problems else 0
    for w in warnings:
        ctx.stderr.write(f"Warning: {w}\n")
    if problems:
        n = len(problems)
        ctx.stderr.write(f"Error: invalid configuration ({n} problem{'s' if n != 1 else ''}):\n")
        for p in problems:
            ctx.stderr.write(f"  - {p}\n")
        return 1
    where = ("embedded development configuration" if args.dev
             else cfg.source_path or "no config file: defaults and environment")
    ctx.print(f"Configuration is valid ({where})")
    return 0


def check_files(cfg: Any) -> tuple[list[str], list[str]]:
    """The files the config names: the policy (policy.mode file), the extra DNS records and the
    derp.paths maps.
    Returns (problems, warnings), one line each."""
    import yaml

    from app.core import derpmap
    from app.core.policy import PolicyError, parse_policy
    from app.core.policy.legacy import is_yaml_name, yaml_to_json

    problems: list[str] = []
    warnings: list[str] = []
    if cfg.policy.mode == "file" and cfg.policy.path:
        where = f"policy.path ({cfg.policy.path})"
        try:
            with open(cfg.policy.path, encoding="utf-8") as f:
                text = f.read()
            if is_yaml_name(cfg.policy.path):
                text = yaml_to_json(text)
            policy = parse_policy(text)
        except OSError as e:
            problems.append(f"{where}: cannot be read ({e.strerror})")
        except PolicyError as e:
            problems.extend(f"{where}: {p}" for p in e.problems)
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{where}: {e}")
        else:
            warnings.extend(f"{where}: {w}" for w in policy.warnings)
    if cfg.dns.extra_records_path:
        from app.core.extrarecords import parse_records

        where = f"dns.extra_records_path ({cfg.dns.extra_records_path})"
        try:
            with open(cfg.dns.extra_records_path, encoding="utf-8") as f:
                parse_records(f.read())
        except OSError as e:
            problems.append(f"{where}: cannot be read ({e.strerror})")
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{where}: {e}")
    for derp_path in cfg.derp.paths:
        where = f"derp.paths ({derp_path})"
        try:
            with open(derp_path, encoding="utf-8") as f:
                derpmap.normalise(yaml.safe_load(f), derp_path)
        except OSError as e:
            problems.append(f"{where}: cannot be read ({e.strerror})")
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            problems.append(f"{where}: invalid YAML{line}")
        except derpmap.DERPMapError as e:
            problems.append(f"{where}: {e}")
    return problems, warnings


def _migrate(ctx: Any, path: str | None) -> int:
    import yaml

    from app.config.legacy import migrate
    from app.config.loader import find_config_file, read_file

    path = path or find_config_file(ctx.env)
    if path is None:
        raise CliError("no config file found; pass -c PATH")
    try:
        data = read_file(path)
    except ConfigError as e:
        raise CliError("; ".join(e.problems)) from None
    nested, problems, warnings = migrate(data)
    for w in warnings:
        ctx.stderr.write(f"Warning: {w}\n")
    for p in problems:
        ctx.stderr.write(f"Error: {p}\n")
    ctx.stdout.write(f"# {path} in today's keys (headscale configtest --migrate)\n")
    ctx.stdout.write(yaml.safe_dump(nested, sort_keys=False, allow_unicode=True))
    return 1 if problems else 0


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
