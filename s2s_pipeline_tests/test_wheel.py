"""The installed package is only the product: ``pip wheel .`` ships no stand-in, sink, generator or test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Words that name development tooling; none may appear in a shipped module path.
TOOLING_WORDS = ("standin", "stand_in", "sink", "generator", "fake", "harness", "demo", "test", "conftest",
                 "localstripe", "devtools")


def test_the_wheel_holds_only_the_s2s_pipeline_package(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".demo", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("s2s_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"s2s_pipeline"}
    modules = [n for n in names if n.endswith(".py")]
    assert "s2s_pipeline/definitions.py" in modules and len(modules) > 30  # the product is all there
    tooling = [n for n in modules if any(word in n.lower() for word in TOOLING_WORDS)]
    assert tooling == [], f"development tooling shipped in the wheel: {tooling}"
    entry_points = next((zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt")),
                        "")
    assert "s2s-demo" not in entry_points  # the demo command comes with devtools/, not the product
