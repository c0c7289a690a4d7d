"""The documentation cannot rot: the CLI page is the parsers, and every page the README links exists."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_page_lists_every_verb_and_flag():
    from raydist.cli import build_parser

    page = _reference().render()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for verb, parser in sub.choices.items():
        section = page.split(f"\n## {verb}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, f"{verb} {flag} missing from the CLI page"


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    ref = _reference()
    page = tmp_path / "cli.md"
    monkeypatch.setattr(ref, "TARGET", page)
    monkeypatch.setattr(ref, "ROOT", tmp_path)
    assert ref.main(["--check"]) == 1  # absent
    assert ref.main([]) == 0 and ref.main(["--check"]) == 0
    page.write_text(page.read_text().replace("--no-gate", "--no-gates"))
    assert ref.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_committed_cli_page_is_current():
    assert _reference().main(["--check"]) == 0, "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_readme_links_resolve_and_stay_short():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith("http")]
    assert local, "the README links its docs"
    for t in local:
        assert (ROOT / t).exists(), f"README links {t}, which does not exist"
