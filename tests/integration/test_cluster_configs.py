"""Every cluster config we ship is secure by default: token auth on every Ray node, no open
dashboard without it, no literal secret anywhere in cluster/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from raydist.distributed.evaluate import token_auth_env

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"(?i)aws_secret_access_key\s*[:=]",
    r"(?i)RAY_AUTH_TOKEN=[0-9a-f]{8,}",  # a literal token in a command
    r"(?i)password\s*[:=]\s*\S+",
]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def has_token_auth(container: dict) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    mode = env.get("RAY_AUTH_MODE", {}).get("value") == "token"
    token = "secretKeyRef" in env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {})
    return mode and token


def ray_cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "RayCluster":
                out.append((path.name, doc["spec"]))
            elif doc and doc.get("kind") == "RayJob":
                out.append((path.name, doc["spec"]["rayClusterSpec"]))
    return out


def test_every_kuberay_container_uses_token_auth():
    specs = ray_cluster_specs()
    assert len(specs) >= 2
    for name, spec in specs:
        if spec.get("authOptions", {}).get("mode") == "token":
            continue  # KubeRay >= 1.5.1 injects the token into every container itself
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for g in groups:
            for c in containers(g):
                assert has_token_auth(c), f"{name}: container {c['name']} runs without token auth"
        host = spec["headGroupSpec"]["rayStartParams"].get("dashboard-host")
        assert host != "0.0.0.0" or all(has_token_auth(c) for c in containers(spec["headGroupSpec"])), name


def test_kuberay_head_is_behind_a_network_policy():
    docs = [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / "networkpolicy.yaml").read_text()) if d]
    pol = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert pol["spec"]["podSelector"]["matchLabels"] == {"ray.io/node-type": "head"}
    ports = {p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]}
    assert {8265, 10001, 6379} <= ports
    assert all(rule.get("from") for rule in pol["spec"]["ingress"])  # no rule open to everyone


def test_vm_cluster_starts_every_node_with_token_auth():
    cfg = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[key] if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert "RAY_AUTH_MODE=token" in cmd and "RAY_AUTH_TOKEN_PATH=" in cmd, cmd
        assert "--dashboard-host=0.0.0.0" not in cmd
    # the token file comes from the user's machine, not from this repo
    assert any("auth_token" in dst and src.startswith("~") for dst, src in cfg["file_mounts"].items())
    rules = cfg["provider"]["security_group"]["IpPermissions"]
    assert {(r["FromPort"], r["ToPort"]) for r in rules} == {(22, 22)}  # Ray's ports are never opened to the outside


@pytest.mark.parametrize("path", sorted(p for p in CLUSTER.rglob("*") if p.is_file()), ids=lambda p: p.name)
def test_no_literal_secret_in_cluster_files(path):
    text = path.read_text()
    for pat in SECRET_PATTERNS:
        assert not re.search(pat, text), f"{path.name} matches {pat}"
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text  # S3 via roles / service accounts


def test_client_turns_token_mode_on_only_when_it_has_a_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token here
    env: dict[str, str] = {}
    assert token_auth_env(env) is None and "RAY_AUTH_MODE" not in env
    env = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "t")}
    assert token_auth_env(env) == "RAY_AUTH_TOKEN_PATH" and env["RAY_AUTH_MODE"] == "token"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x")
    env = {}
    assert token_auth_env(env) is None and "RAY_AUTH_MODE" not in env  # Ray's default file alone: the client follows the cluster
    env = {"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_MODE": "disabled"}
    assert token_auth_env(env) == "RAY_AUTH_TOKEN" and env["RAY_AUTH_MODE"] == "disabled"  # an explicit choice stays


ROOT = CLUSTER.parent


def _dockerfile() -> tuple[dict[str, str], list[str], list[tuple[str, str]]]:
    """(ARG defaults, RUN commands, COPY (src, dst)) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    args, runs, copies = {}, [], []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
        elif word == "RUN":
            runs.append(rest)
        elif word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            copies += [(src, parts[-1]) for src in parts[:-1]]
        elif word == "FROM":
            args["FROM"] = rest
    return args, runs, copies


def test_the_image_is_rays_pinned_base_with_every_runtime_dependency():
    """No container engine runs here (and Docker Hub is unreachable), so the image is checked by
    reading it: Ray's base image of the pinned Ray version, the project installed from
    pyproject.toml under constraints.txt (so every runtime dependency, open3d included), open3d's
    system library, the packaged backbone weights, and the files it copies exist."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import runtime_env

    pins = runtime_env.pins()
    args, runs, copies = _dockerfile()
    assert args["RAY_VERSION"] == pins["ray"] and args["FROM"] == "rayproject/ray:${RAY_VERSION}-py311-gpu"
    install = " && ".join(runs)
    assert f"torch=={pins['torch']}" in install and f"torchvision=={pins['torchvision']}" in install
    assert re.search(r"pip install [^&]*-c constraints.txt [^&]*\"\.\[pretrained\]\"", install), install
    assert "libusb-1.0-0" in install and "import raydist, open3d, torch" in install
    for src, _ in copies:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repo"
    assert {"pyproject.toml", "constraints.txt", "raydist"} <= {s for s, _ in copies}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    # the manifests run that image at the project's version, with the same Ray version
    version = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, spec in ray_cluster_specs():
        assert spec["rayVersion"] == pins["ray"], name
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            for c in containers(g):
                assert c["image"] == f"REGISTRY/raydist:{version}", (name, c["image"])


def test_runtime_env_is_generated_from_pyproject_and_cannot_drift():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import runtime_env

    text = (CLUSTER / "runtime_env.yaml").read_text()
    assert text == runtime_env.render(), "cluster/runtime_env.yaml is stale: run python scripts/runtime_env.py"
    pip = yaml.safe_load(text)["pip"]
    names = {runtime_env._name(r) for r in pip}
    project = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]["pretrained"] + project["optional-dependencies"]["openvino"]
    wanted = {runtime_env._name(r) for r in project["dependencies"] + extras} - {"ray"}
    assert names == wanted and "open3d" in names and "openvino" in names
    assert all("==" in r for r in pip)  # every one pinned to what CI installed
