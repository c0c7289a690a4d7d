"""Write docs/cli.md from the argparse parsers of ``raydist`` (never by hand).

The page is the parsers rendered as tables, one per verb, so it cannot drift from the code: the
README's test command runs ``--check`` (tests/test_docs.py), which fails when the committed page differs from what the
parsers give now.

    python scripts/cli_reference.py            # rewrite docs/cli.md
    python scripts/cli_reference.py --check    # exit 1 when docs/cli.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"
sys.path.insert(0, str(ROOT))

HEADER = """# Command-line reference

Generated from the argparse parsers by `python scripts/cli_reference.py`; the test command fails
when this page and the parsers differ. `raydist <verb> --help` prints the same. The `jobs/<verb>.py`
entry points for `ray job submit` take the same flags as the verb of their name (there the
executor defaults to `ray`).
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _flag(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.nargs == 0 or not action.option_strings:
        return names
    metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices else action.dest.upper())
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return f"{names} `{metavar}`"


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return _cell(text)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
        return ""
    return f"`{_cell(action.default)}`" if action.default != "" else '`""`'


def render() -> str:
    import os

    os.environ["COLUMNS"] = "100"  # argparse wraps usage at the terminal's width: fixed, so the page is the same everywhere
    from raydist.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    out = [HEADER]
    out.append("| verb | what it does |\n|---|---|")
    out += [f"| [`{name}`](#{name}) | {_cell(helps.get(name, ''))} |" for name in sub.choices]
    for name, p in sub.choices.items():
        out.append(f"\n## {name}\n\n{_cell(helps.get(name, ''))}\n")
        out.append("```text\n" + p.format_usage().strip() + "\n```\n")
        positional = [a for a in p._actions if not a.option_strings]
        options = [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        rows = [(a, _flag(a), _default(a), _help(a, p.prog)) for a in positional + options]
        out.append("| argument | default | meaning |\n|---|---|---|")
        out += [f"| {flag} | {default} | {text} |" for _, flag, default, text in rows]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the page is stale instead of writing it")
    args = ap.parse_args(argv)
    page = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != page:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(page)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
