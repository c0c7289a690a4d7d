"""The environment is the locked one: every installed direct dependency has constraints.txt's version."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#") and "==" in line:
            name, v = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name).lower()] = v.strip()
    return out


def test_every_direct_dependency_is_pinned_and_installed_at_its_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    locked = pins()
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0]).lower()
        assert name in locked, f"{name} is not in constraints.txt: run scripts/lock.sh"
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        assert installed == locked[name], f"{name} {installed} installed, {locked[name]} locked: run scripts/bootstrap.sh"
