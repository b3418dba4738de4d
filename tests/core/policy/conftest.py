"""Prints the golden conformance summary (N passed, M failed per category) after the run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("test_golden")
    results = getattr(mod, "RESULTS", None)
    if not results:
        return
    known = getattr(mod, "KNOWN_FAILURES", {})
    terminalreporter.section("policy golden conformance")
    for category in sorted(results):
        outcomes = results[category]
        passed = sum(o.ok for o in outcomes)
        failed = len(outcomes) - passed
        expected = sum(1 for o in outcomes if not o.ok and o.case_id in known)
        terminalreporter.write_line(
            f"{category}: {passed} passed, {failed} failed ({expected} of them known failures)")
