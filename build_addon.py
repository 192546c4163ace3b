"""Build the FlowMotion Blender extension zips, ready for Blender's Install from Disk.

    python build_addon.py [--out dist]

One zip per Python generation of Blender: Blender 4.2 to 5.0 run Python 3.11, Blender 5.1 and
later Python 3.13. Blender picks bundled wheels by platform only, so each zip holds exactly one
wheel of pyzmq and of msgpack per platform (Linux x64, Windows x64, macOS arm64 and x64), for its
Python, fenced with blender_version_min/max. Each zip carries a copy of protocol/ and of the
library's durable.py made here, is written whole or not at all, and
passes Blender's own validator when the bpy package is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
PROTOCOL = ROOT / "protocol"
VERSION = ROOT / "flowmotion" / "_version.py"
"""The project's one version, which each zip's manifest carries."""
DURABLE = ROOT / "flowmotion" / "durable.py"
"""The library's crash-safe writes: the add-on writes its take frames through its own copy."""
PACKAGES = {"pyzmq": "27.3.0", "msgpack": "1.2.4"}

# pip tags per Blender platform, best first; pip picks the first one a release has a wheel for.
PLATFORM_TAGS = {
    "linux-x64": [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_26_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
    "macos-x64": ["macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
}


@dataclass(frozen=True)
class Generation:
    python: str
    blender_min: str
    blender_max: str | None

    @property
    def tag(self) -> str:
        return "py" + self.python.replace(".", "")


GENERATIONS = (Generation("3.11", "4.2.0", "5.1.0"), Generation("3.13", "5.1.0", None))


def fetch_wheel(package: str, version: str, python: str, platform: str, cache: Path) -> Path:
    """The one wheel of `package` for a Blender platform and Python, from the cache or PyPI."""
    folder = cache / f"{package}-{version}-{python}-{platform}"
    found = sorted(folder.glob("*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--dest",
            str(folder),
            f"{package}=={version}",
        ]
        for tag in PLATFORM_TAGS[platform]:
            command += ["--platform", tag]
        result = subprocess.run(command, capture_output=True, text=True)
        found = sorted(folder.glob("*.whl"))
        if result.returncode != 0 or len(found) != 1:
            raise SystemExit(
                f"could not get one {package} {version} wheel for Python {python} on {platform}:\n"
                f"{result.stderr.strip()}"
            )
    return found[0]


def manifest_text(generation: Generation, wheels: list[str]) -> str:
    source = (ADDON / "blender_manifest.toml").read_text()
    tomllib.loads(source)  # refuse a broken template before building anything
    fence = f'blender_version_min = "{generation.blender_min}"\n'
    if generation.blender_max:
        fence += f'blender_version_max = "{generation.blender_max}"\n'
    listed = "".join(f'  "./{wheel}",\n' for wheel in wheels)
    source = set_version(source, project_version())
    # Top-level keys must come before the first [table].
    head, table, rest = source.partition("\n[")
    manifest = f"{head}\nwheels = [\n{listed}]\n{table}{rest}".replace('blender_version_min = "4.2.0"\n', fence)
    parsed = tomllib.loads(manifest)
    if parsed.get("wheels") != [f"./{wheel}" for wheel in wheels]:
        raise SystemExit("the manifest template puts wheels in the wrong place")
    return manifest


def project_version() -> str:
    """The library's __version__, read without importing the package (and with it torch)."""
    spec = importlib.util.spec_from_file_location("flowmotion_version", VERSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__version__


def set_version(manifest: str, version: str) -> str:
    """The manifest with its top-level `version` set to the project's."""
    lines = manifest.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("version = ")]
    if len(found) != 1:
        raise SystemExit("the manifest template must have one top-level `version = ` line")
    lines[found[0]] = f'version = "{version}"\n'
    return "".join(lines)


def addon_files() -> list[Path]:
    return sorted(
        p
        for p in ADDON.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "blender_manifest.toml"
    )


def _load_durable():
    # By path, not `import flowmotion.durable`: the package's __init__ pulls in torch, which a
    # build of the add-on has no need for.
    spec = importlib.util.spec_from_file_location("flowmotion_durable", DURABLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


durable = _load_durable()


def build_zip(generation: Generation, out: Path, cache: Path) -> Path:
    version = project_version()
    wheels: dict[str, Path] = {}
    for package, package_version in PACKAGES.items():
        for platform in PLATFORM_TAGS:
            wheel = fetch_wheel(package, package_version, generation.python, platform, cache)
            wheels[wheel.name] = wheel  # a universal2 wheel serves both macOS platforms once
    names = [f"wheels/{name}" for name in sorted(wheels)]
    target = out / f"flowmotion_previs-{version}-{generation.tag}.zip"
    out.mkdir(parents=True, exist_ok=True)
    with durable.replacing(target) as staged:
        # A zip is for others to install: readable by all whatever the umask (Blender's guidelines).
        os.chmod(staged, 0o644)
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("blender_manifest.toml", manifest_text(generation, names))
            for path in addon_files():
                archive.write(path, path.relative_to(ADDON).as_posix())
            for path in sorted(PROTOCOL.glob("*.py")):
                archive.write(path, f"protocol/{path.name}")
            archive.write(DURABLE, "durable.py")
            for name, wheel in sorted(wheels.items()):
                archive.write(wheel, f"wheels/{name}")
    return target


def validate(archive: Path) -> str | None:
    """Blender's own validator on the zip; None when bpy is not installed to provide it."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    tool = next(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"), None)
    if tool is None:
        return None
    result = subprocess.run([sys.executable, str(tool), "validate", str(archive)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{archive.name} fails Blender's validator:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--wheels-cache", type=Path, default=ROOT / ".wheels-cache")
    args = parser.parse_args(argv)
    for generation in GENERATIONS:
        archive = build_zip(generation, args.out, args.wheels_cache)
        verdict = validate(archive)
        fence = f"Blender {generation.blender_min}" + (
            f" up to {generation.blender_max}" if generation.blender_max else " and later"
        )
        print(
            f"built {archive} ({fence}, Python {generation.python})"
            + (f"; {verdict}" if verdict else "; not validated: install bpy to run Blender's validator")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
