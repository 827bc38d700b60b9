"""A normal (non-editable) install carries everything: the package, its CLI and the shipped search spaces."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def test_pip_install_non_editable_finds_shipped_spaces(tmp_path):
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies (torch, ray, ...) come from this environment; anrl_ray itself must come from the install
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--target", site, str(ROOT)], check=True, cwd=tmp_path)

    where = tmp_path / "elsewhere"  # not the checkout: nothing of the source tree is importable from here
    where.mkdir()
    (where / "run_search.py").write_text((ROOT / "run_search.py").read_text())
    probe = ("import anrl_ray, anrl_ray.space as s; print(anrl_ray.__file__); "
             "print(','.join(s.shipped_space_names())); print(s.load_space('anrl_limited').name)")
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True, cwd=where).stdout.split()
    assert out[0].startswith(site) and str(ROOT) not in out[0].replace(site, "")  # not the checkout
    assert out[1] == "anrl,anrl_backbones,anrl_limited" and out[2] == "anrl_limited"
    res = subprocess.run([str(py), "run_search.py", "--help"], capture_output=True, text=True, cwd=where)
    assert res.returncode == 0, res.stderr
    assert "anrl_limited" in res.stdout and "--protocol" in res.stdout
