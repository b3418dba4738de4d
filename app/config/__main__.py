"""``python -m app.config docs [PATH]``: write the generated configuration reference."""

import sys

from app.config.docs import render_markdown


def main(argv: list[str]) -> int:
    if argv[:1] != ["docs"]:
        print("usage: python -m app.config docs [PATH]", file=sys.stderr)
        return 2
    text = render_markdown()
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
