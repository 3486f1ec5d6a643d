"""The project's packaging: environment.yml and pyproject.toml must ask for the same things."""
import re
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, pip


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = _pyproject()
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    _, pip = _conda()
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert listed.keys() == wanted.keys(), f"only in environment.yml: {listed.keys() - wanted.keys()}, " \
                                           f"only in pyproject: {wanted.keys() - listed.keys()}"
    for name, spec in wanted.items():
        assert listed[name] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {listed[name]!r}"


def test_environment_yml_installs_the_project_and_the_same_python():
    conda, pip = _conda()
    assert "-e .[test]" in pip
    python = next(d for d in conda if d.startswith("python"))
    assert python.replace("python", "") == _pyproject()["requires-python"]
