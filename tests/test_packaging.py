"""A non-editable install serves the same page: the wheel carries every module and the web assets of web/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Run in a fresh interpreter from the unpacked wheel: the app must find its templates and static files there.
SERVE_FROM_WHEEL = """
import json, sys
from conftest import FakeEmbedder
from qa.app import WEB, create_app
client = create_app({"TESTING": True, "INDEX": sys.argv[1], "EMBEDDER": FakeEmbedder()}).test_client()
page, script = client.get("/?q=Nile"), client.get("/static/search.js")
print(json.dumps({"web": str(WEB), "page": page.status_code, "has_results": 'class="result' in page.text,
                  "script": script.status_code, "script_bytes": len(script.data)}))
"""


def build_wheel(into: Path) -> Path:
    """The wheel of a copy of the checkout (the build leaves its work folders in the copy, not in the repository)."""
    source = into / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("src", "web"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(into / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (into / "dist").glob("qa-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_carries_every_module_and_web_asset_and_serves_the_page(tmp_path, tiny_index):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    modules = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "qa").rglob("*.py")}
    assets = {"qa/webassets/" + p.relative_to(ROOT / "web").as_posix()
              for p in (ROOT / "web").rglob("*") if p.is_file()}
    assert {"qa/webassets/templates/search.html", "qa/webassets/static/search.js"} <= assets
    assert not (modules | assets) - packed, sorted((modules | assets) - packed)

    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-c", SERVE_FROM_WHEEL, str(tiny_index)], check=False, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{TESTS}"}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(served["web"]) == site / "qa" / "webassets"
    assert served["page"] == 200 and served["has_results"]
    assert served["script"] == 200 and served["script_bytes"] == (ROOT / "web" / "static" / "search.js").stat().st_size
