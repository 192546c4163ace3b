"""One version for the whole project: the package, the add-on's manifest and the backend's welcome."""

import importlib
import importlib.util
import sys
import tomllib
from pathlib import Path

import flowmotion
from tests.backend.conftest import backend, pipe, welcomed  # noqa: F401  (fixtures and helper)

ROOT = Path(__file__).resolve().parents[1]


def build_addon():
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_package_takes_its_version_from_the_library():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    source = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, _, name = source.rpartition(".")
    assert getattr(importlib.import_module(module), name) == flowmotion.__version__


def test_the_manifest_in_the_folder_and_in_each_zip_carry_the_library_version():
    template = (ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    assert tomllib.loads(template)["version"] == flowmotion.__version__
    builder = build_addon()
    assert builder.project_version() == flowmotion.__version__
    for generation in builder.GENERATIONS:
        built = tomllib.loads(builder.manifest_text(generation, ["wheels/a.whl"]))
        assert built["version"] == flowmotion.__version__


def test_the_build_writes_the_library_version_over_the_template():
    builder = build_addon()
    template = (ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    written = tomllib.loads(builder.set_version(template, "9.8.7"))
    assert written["version"] == "9.8.7" and written["schema_version"] == tomllib.loads(template)["schema_version"]


def test_the_backend_welcome_reports_the_library_version(backend):  # noqa: F811  (the fixture)
    assert welcomed(backend.client()).server == f"flowmotion-backend {flowmotion.__version__}"
