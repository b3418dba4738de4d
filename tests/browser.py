"""A real browser for tests: Debian's Chromium (apt `chromium`) driven by PyPI `playwright`.

Never `playwright install` (it downloads browsers): Playwright drives `/usr/bin/chromium` through
`executable_path`. Every launch gets a fresh profile (`--user-data-dir`) and a fresh `$HOME`
whose NSS database trusts the test CAs given (Chromium on Linux reads trust from
`$HOME/.pki/nssdb`, not from `SSL_CERT_FILE`; `certutil` is apt `libnss3-tools`).

Use it in sync tests (the real-client harness is synchronous):

    with chromium(tmp_path, ca_pems=[ca], netns=ns.name) as page:
        page.goto(url)
        screenshot(page, "login")

or in async tests with `async with async_chromium(...) as page` (Playwright's sync API refuses
to run inside an asyncio loop). `netns` runs Chromium inside a network namespace the test made
(the Playwright driver stays outside and talks to it over a pipe).

Screenshots go to `tests/.artifacts/` (or `$TEST_ARTIFACTS`), one PNG per name, so a person
can look at what the pages showed after a run.

Every request passes a route that aborts anything outside loopback and 10.200.0.0/24 (and no
host name but localhost resolves). With that interception on, Chromium aborts a top-level
navigation to a `/favicon.ico` URL: fetch such files with `page.request.get(url)` instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parent / ".artifacts"))
# From REAL-PARTS.md: headless, no sandbox (root), nothing reaching outside the machine.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-features=Translate,MediaRouter,OptimizationHints",
    # Traffic stays on this machine: no host name resolves (IP literals and localhost only), and
    # requests to addresses outside loopback and the test namespaces' net are aborted (_local_only).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.* , EXCLUDE 10.200.0.*",
]
LOCAL_NETS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.200.0.0/24")]


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if url.startswith(("data:", "about:", "blob:")) or host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in LOCAL_NETS)


def available() -> str | None:
    """None when a browser can run here, else what is missing (the tests fail with it)."""
    if not os.access(CHROMIUM, os.X_OK):
        return "Chromium is missing: run `make apt` (apt `chromium`)"
    if shutil.which("certutil") is None:
        return "certutil is missing: run `make apt` (apt `libnss3-tools`)"
    return None


def make_home(home: Path, ca_pems: Sequence[Path] = ()) -> Path:
    """A fresh $HOME whose NSS database trusts each CA in ca_pems for TLS servers."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    db = f"sql:{nssdb}"
    subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True, capture_output=True)
    for i, ca in enumerate(ca_pems):
        subprocess.run(["certutil", "-d", db, "-A", "-t", "C,,", "-n", f"testca{i}", "-i", str(ca)],
                       check=True, capture_output=True)
    return home


def _launch_args(workdir: Path, ca_pems: Sequence[Path], netns: str | None,
                 viewport: tuple[int, int]) -> tuple[str, dict]:
    """(user data dir, keyword arguments of launch_persistent_context)."""
    missing = available()
    assert missing is None, missing
    workdir.mkdir(parents=True, exist_ok=True)
    home = make_home(workdir / "browser-home", ca_pems)
    profile = workdir / "browser-profile"
    profile.mkdir(exist_ok=True)
    executable = CHROMIUM
    if netns:
        # `ip netns exec` keeps the pipe file descriptors Playwright hands to Chromium.
        executable = str(workdir / "chromium-in-netns")
        Path(executable).write_text(f'#!/bin/sh\nexec ip netns exec {netns} {CHROMIUM} "$@"\n')
        os.chmod(executable, 0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache")}
    # A persistent context: Playwright's plain launch() would add a temporary profile of its own.
    return str(profile), {"executable_path": executable, "headless": True, "env": env, "args": FLAGS,
                          "viewport": {"width": viewport[0], "height": viewport[1]}}


@contextlib.contextmanager
def chromium(workdir: Path, *, ca_pems: Sequence[Path] = (), netns: str | None = None,
             viewport: tuple[int, int] = (1000, 800)) -> Iterator:
    """A Playwright sync Page in a fresh headless Chromium; closed (and the browser ended) after."""
    from playwright.sync_api import sync_playwright

    profile, kwargs = _launch_args(workdir, ca_pems, netns, viewport)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, **kwargs)
        ctx.route("**/*", lambda route: route.continue_() if is_local(route.request.url) else route.abort())
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()


@contextlib.asynccontextmanager
async def async_chromium(workdir: Path, *, ca_pems: Sequence[Path] = (), netns: str | None = None,
                         viewport: tuple[int, int] = (1000, 800)) -> AsyncIterator:
    """The same as chromium(), for async tests: yields a Playwright async Page."""
    from playwright.async_api import async_playwright

    profile, kwargs = _launch_args(workdir, ca_pems, netns, viewport)
    async with async_playwright() as pw:
        ctx = await pw.chromium.launch_persistent_context(profile, **kwargs)

        async def local_only(route):
            await (route.continue_() if is_local(route.request.url) else route.abort())

        await ctx.route("**/*", local_only)
        try:
            yield ctx.pages[0] if ctx.pages else await ctx.new_page()
        finally:
            await ctx.close()


def artifact_path(name: str) -> Path:
    """Where a screenshot or saved page called `name` goes (a safe file name, folder created)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Saves a PNG of a sync Page under the artifacts folder and returns its path."""
    path = artifact_path(name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=full_page)
    return path


async def async_screenshot(page, name: str, *, full_page: bool = True) -> Path:
    path = artifact_path(name if name.endswith(".png") else f"{name}.png")
    await page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def browser_page(tmp_path):
    """A sync Page in a fresh Chromium with no extra trust (for plain http:// on loopback)."""
    with chromium(tmp_path / "browser") as page:
        yield page
