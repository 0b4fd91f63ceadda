"""Run timm's own model tests (tests/test_models.py of the installed timm) on the zoo's models.

    make timm-suite MODELS='hornet_*'                  # fnmatch patterns, comma-separated
    python tools/timm_suite.py 'hornet_*,cas_vit_xs' -x   # what make runs; more args go to pytest

A backbone is timm-compatible when timm's suite passes on it (docs/DEVELOPING.md). timm ships
its tests in its source distribution only, not in the wheel: the first run downloads the sdist of
the installed release with pip and keeps its tests/ and pyproject.toml (timm's pytest settings)
in .cache/timm-suite/timm-<version>/ (gitignored); later runs use them offline. The project's
own contract tests (tests/zoo) are what CI runs; this suite is slower (about an hour for the
whole zoo on 2 cores), so run it family by family.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import timm

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "timm-suite"


def fetch_timm_tests(version: str, cache: Path = CACHE) -> Path:
    """The folder holding timm `version`'s tests/ and pyproject.toml, downloaded once."""
    folder = cache / f"timm-{version}"
    if (folder / "tests" / "test_models.py").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", f"timm=={version}", "--dest", scratch],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(scratch).glob("timm-*.tar.gz")
        wanted = (f"timm-{version}/tests/", f"timm-{version}/pyproject.toml")
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(wanted)]
            archive.extractall(scratch, members=members, filter="data")
        if not (Path(scratch) / f"timm-{version}" / "tests" / "test_models.py").is_file():
            raise FileNotFoundError(f"{sdist.name} holds no tests/test_models.py")
        # moved in whole only once complete: an interrupted download leaves no half cache
        shutil.rmtree(folder, ignore_errors=True)
        (Path(scratch) / f"timm-{version}").rename(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", help="fnmatch patterns of the zoo's model names, e.g. 'hornet_*'")
    args, pytest_args = parser.parse_known_args(argv)
    folder = fetch_timm_tests(timm.__version__)
    env = {
        **os.environ,
        # the zoo and the plugin import from here; the cwd (timm's tests) comes first
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tools"),
                                                    os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",  # no test may fetch weights
    }  # fmt: skip
    command = [
        sys.executable, "-m", "pytest", "tests/test_models.py", "-p", "timm_suite_plugin",
        f"--zoo-models={args.models}", "-p", "no:cacheprovider", "-q", "-rfE",
        "-k", "not pretrained", "-W", "ignore::pytest.PytestUnknownMarkWarning", *pytest_args,
    ]  # fmt: skip
    # from timm's folder, which holds no timm/ package to shadow the installed one
    return subprocess.run(command, cwd=folder, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
