"""Imports only run down: web → features → llm / integrations → core (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
FEATURES = {"frontdoors", "conversations", "gists", "deployments", "ops", "keys", "calls"}
ALLOWED = {
    "core": set(),
    "llm": {"core"},
    "integrations": {"core"},
    **{feature: {"core", "llm", "integrations"} for feature in FEATURES},
}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "app" else None


def app_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app" or name.startswith("app.")}


def test_every_package_imports_only_what_lies_below_it():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((APP / package).rglob("*.py")):
            for module in app_imports(path):
                target = package_of(module)
                if target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(APP.parent)} imports {module}")
    assert wrong == []


def test_core_needs_flask_only_to_bind_the_database_and_read_requests():
    """Errors, time, paging, leases... are plain Python: a provider or a job never pulls in Flask through them."""
    users = [path.name for path in sorted((APP / "core").glob("*.py"))
             if any(name == "flask" or name.startswith("flask.") for name in imported_names(path))]
    assert users == ["db.py", "http.py"]


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
