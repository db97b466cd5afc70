"""``make matrix``: the test suite, as ``make test`` runs it, at both ends of what we support.

    tests-3.9-oldest    CPython 3.9 with the oldest framework releases the extras in
                        pyproject.toml claim; the pins are in matrix/oldest.txt
    tests-3.13-newest   CPython 3.13 with the newest release of everything, upgraded each run

Each session keeps its virtualenv under .nox/ between runs (``reuse_venv``); the install step
still runs every time, so a changed pin or a new release is picked up. Run one session, or pass
pytest arguments after ``--``::

    make matrix NOXFLAGS="-s tests-3.9-oldest -- -x tests/test_flask_apps.py"
"""

import glob
import os
import re
import shutil
from pathlib import Path
from typing import List, Tuple

import nox

ROOT = Path(__file__).resolve().parent
OLDEST = ROOT / "matrix" / "oldest.txt"

# Every extra whose framework the suite exercises (``make test`` leaves out celery and rq only
# because dev already lists them).
EXTRAS = ".[dev,django,flask,asgi,celery,rq]"

# What each session prints before the tests, so a log says which releases it ran against.
REPORTED = (
    "Django",
    "asgiref",
    "Flask",
    "Werkzeug",
    "Flask-Login",
    "starlette",
    "fastapi",
    "uvicorn",
    "httpx",
    "httpx2",
    "gunicorn",
    "celery",
    "kombu",
    "rq",
    "redis",
    "pytest",
    "pytest-django",
    "playwright",
)

nox.options.sessions = ["tests-3.9-oldest", "tests-3.13-newest"]
# A missing Python is a failed matrix, not a skipped session that looks green.
nox.options.error_on_missing_interpreters = True


def _version_key(path: str) -> Tuple[int, ...]:
    """Sort key for ``.../versions/3.9.18/...``: the version's numbers (so 3.9.18 > 3.9.9)."""
    match = re.search(r"/versions/(\d+(?:\.\d+)*)/", path)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def interpreter(version: str) -> str:
    """The path of a CPython ``version`` (``"3.9"``): pyenv's newest build of it, else the
    ``python3.X`` on PATH.

    pyenv's ``python3.X`` shim only runs the versions pyenv has selected, and nox (which does
    not know pyenv) would take the shim for the interpreter, so pyenv's own builds come first.
    """
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    builds = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
    # Only final releases (3.13.0, not 3.13.0rc1 or 3.13t builds) pass the key's pattern.
    builds = [path for path in builds if re.search(rf"/versions/{re.escape(version)}\.\d+/", path)]
    if builds:
        return max(builds, key=_version_key)
    return shutil.which(f"python{version}") or f"python{version}"


def report_versions(session: nox.Session) -> None:
    """Print the installed release of each package in REPORTED, and check they fit together."""
    names = ", ".join(repr(name) for name in REPORTED)
    session.run(
        "python",
        "-c",
        "from importlib.metadata import version, PackageNotFoundError\n"
        "import platform\n"
        "print('Python', platform.python_version())\n"
        f"for name in ({names}):\n"
        "    try:\n"
        "        print(f'{name}=={version(name)}')\n"
        "    except PackageNotFoundError:\n"
        "        print(f'{name}: not installed')\n",
        silent=False,
    )
    # pip's resolver honours every requirement at install time; this catches a reused venv
    # whose packages a later pin left inconsistent.
    session.run("python", "-m", "pip", "check")


def run_tests(session: nox.Session) -> None:
    """``python -m pytest`` from the repository root, as ``make test`` runs it."""
    report_versions(session)
    session.run("python", "-m", "pytest", *session.posargs)


def install(session: nox.Session, *options: str) -> None:
    """Install analytics-core (editable, as ``make test`` does) with EXTRAS, plus ``options``."""
    session.install("--upgrade", "pip")
    args: List[str] = [*options, "-e", EXTRAS]
    session.install(*args)


@nox.session(name="tests-3.9-oldest", python=interpreter("3.9"), reuse_venv=True)
def tests_oldest(session: nox.Session) -> None:
    """CPython 3.9 with Django 4.2, Flask 2.3, Starlette 0.37 and the other lower bounds."""
    install(session, "--constraint", str(OLDEST))
    run_tests(session)


@nox.session(name="tests-3.13-newest", python=interpreter("3.13"), reuse_venv=True)
def tests_newest(session: nox.Session) -> None:
    """CPython 3.13 with the newest release of every framework and test dependency."""
    # Eager: a reused venv gets the newest release of dependencies too, not only of EXTRAS.
    install(session, "--upgrade", "--upgrade-strategy", "eager")
    run_tests(session)
