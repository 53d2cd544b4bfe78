"""Set-up files agree with each other."""
import re
import tomllib

import yaml

from conftest import ROOT


def _name(req: str) -> str:
    return re.split(r"[=<>!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def pinned_requirements(project: dict) -> list[str]:
    """The runtime dependencies and the extras make install installs (dev, services)."""
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["dev"] + extras["services"]


def test_environment_yml_lists_the_same_pinned_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pinned_requirements(project)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_reqs = [r for r in pip_section if not r.startswith("-e")]
    assert sorted(conda_reqs) == sorted(pinned)
    assert all("==" in r for r in pinned), "pin every dependency to the tested version"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=")[1] in project["requires-python"] or python == "python=3.11"


def test_lock_file_agrees_with_pyproject_pins():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in pinned_requirements(project):
        name, version = _name(req), req.split("==")[1]
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"


def test_installed_environment_is_exactly_the_lock():
    """make install takes the lock as it is (--no-deps): a resolver run on top of it once re-added
    rfc3987-syntax, which overrides.txt drops (1.6 s on every nbformat import)."""
    import subprocess
    import sys

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    lock = {norm(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines()
            if "==" in line and not line.startswith((" ", "#"))}
    # in a fresh interpreter: once ydata-profiling is imported here, setuptools' vendored packages show up too
    listed = subprocess.run([sys.executable, "-c", "from importlib import metadata\n"
                             "print('\\n'.join(d.metadata['Name'] for d in metadata.distributions()))"],
                            capture_output=True, text=True, timeout=120, check=True).stdout
    installed = {norm(name) for name in listed.split()}
    assert installed - lock - {"coincast", "pip", "uv", "setuptools", "wheel"} == set()
    assert "rfc3987-syntax" not in lock


def test_pipeline_params_are_all_env_knobs():
    """pipeline.yaml holds wiring only: every param is a {{placeholder}} from env.yaml."""
    spec = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
    env = yaml.safe_load((ROOT / "env.yaml").read_text())
    for task in spec["tasks"]:
        for key, value in (task.get("params") or {}).items():
            values = value.items() if isinstance(value, dict) else [(key, value)]  # a dict param groups knobs
            for name, v in values:
                m = re.fullmatch(r"\{\{(\w+)\}\}", str(v))
                assert m and m.group(1) in env, f"{task['name']}.{name} = {v!r} is not an env.yaml knob"
        for name, path in task["product"].items():
            assert re.fullmatch(r"products/\{\{coin\}\}/[\w.]+(\.\{\{executed_format\}\})?", path), path
        m = re.fullmatch(r"\{\{(\w+)\}\}", str(task.get("executor", "{{notebook_executor}}")))
        assert m and m.group(1) in env, f"{task['name']}.executor is not an env.yaml knob"


def test_notebooks_have_no_injected_cells():
    for nb in (ROOT / "notebooks").glob("*.py"):
        text = nb.read_text()
        assert "injected-parameters" not in text and "injected_manually" not in text, nb.name
        assert 'tags=["parameters"]' in text, nb.name


def is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


def test_coin_workers_fork_with_everything_the_notebooks_import():
    """build.PRELOAD (coincast.patches.PIPELINE_MODULES) is imported, collector off, before notebooks run in-process
    or coin workers fork; a notebook import missing from it is paid again (in every worker). Checked in a fresh
    interpreter: this one has imported most of the package already."""
    import ast
    import subprocess
    import sys

    wanted = set()
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                wanted.add(node.module)  # and each name that is a module of it (from coincast.data import gate)
                wanted |= {f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}")}
            elif isinstance(node, ast.Import):
                wanted |= {a.name for a in node.names}
    assert "coincast.registry" in wanted and "coincast.operations.training" in wanted
    code = ("import sys, json\nfrom coincast.operations.build import preload_build\n"
            "preload_build({'notebook_executor': 'ploomber-engine'})\n"
            f"print(json.dumps(sorted(m for m in {sorted(wanted)!r} if m not in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", "add these to coincast.patches.PIPELINE_MODULES: " + proc.stdout
