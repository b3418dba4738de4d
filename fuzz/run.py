"""Run one target under atheris in this process: ``python -m fuzz.run TARGET [libFuzzer args]``.

The orchestrator (``python -m fuzz``) starts one of these per target and reads libFuzzer's
final statistics from its stderr.
"""

from __future__ import annotations

import sys

import atheris


def main() -> None:
    name, args = sys.argv[1], sys.argv[2:]
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    with atheris.instrument_imports(include=["app"]):
        fn = target.setup()
    expected = target.expected

    def one_input(data: bytes) -> None:
        try:
            fn(data)
        except expected:
            pass

    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
