"""Make this template your own project in one command, at the root of a fresh clone:

    python -m expkit.fork my_project

renames, in place, the package directory (``src/expkit`` -> ``src/my_project``) and every
mention of the name in the tracked text files: imports, each ``_target_`` in ``conf/``,
``train.py``, ``eval.py``, the tests, ``pyproject.toml`` (project name and package), the
README and CI script; ``EXPKIT_*`` environment variables become ``MY_PROJECT_*``. Then
reinstall (``pip install -e ".[dev]"``), run the tests and commit.

Everything is checked before the first file changes: the name must be a Python identifier
that is not taken, and the command must run at the project root.
"""
from __future__ import annotations

import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The package's current name (``expkit`` until forked; a fork can be forked again).
OLD = (__package__ or __name__).split(".")[0]

#: Never edited or walked, without git: version control, environments, caches (anywhere) and
#: run outputs, data and build folders (at the root).
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache"}
SKIP_ROOT_DIRS = {"outputs", "multirun", "data", "build", "dist", "lightning_logs"}


class ForkError(Exception):
    """Why the fork cannot run; printed as one line."""


def _word(name: str) -> re.Pattern[str]:
    """``name`` as a word, or joined to others by underscores; never inside a longer alphanumeric word."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")


def check_name(new: str, root: Path) -> None:
    if not new.isidentifier() or keyword.iskeyword(new):
        raise ForkError(f"NEW_NAME={new!r}: must be a Python identifier (letters, digits, underscores; "
                        "not starting with a digit; not a keyword), e.g. my_project")
    if new == OLD:
        raise ForkError(f"NEW_NAME={new!r}: the package is already called {OLD}")
    if not (root / "pyproject.toml").is_file() or not (root / "src" / OLD / "__init__.py").is_file():
        raise ForkError(f"run this at the root of the project (where pyproject.toml and src/{OLD}/ are); "
                        f"{root} is not")
    for taken in (root / "src" / new, root / new):
        if taken.exists():
            raise ForkError(f"NEW_NAME={new!r}: {taken} already exists")


def project_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), else every file outside SKIP_DIRS."""
    if (root / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.split("\0")
        files = [root / name for name in listed if name]
    else:
        files = []
        for folder, dirs, names in os.walk(root):
            at_root = Path(folder) == root
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                       and not (at_root and d in SKIP_ROOT_DIRS)]
            files += [Path(folder) / name for name in names]
    return sorted(f for f in files if f.is_file() and not f.is_symlink())


def renamed_text(text: str, new: str) -> str:
    text = _word(OLD).sub(new, text)
    return _word(OLD.upper()).sub(new.upper(), text)


def _write_like(path: Path, text: str) -> None:
    """Replace ``path`` atomically, keeping its permission bits (``.ci/run`` stays executable)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    shutil.copymode(path, tmp)
    os.replace(tmp, path)


def fork(new: str, root: Path) -> int:
    """Rename the project to ``new`` in place; returns how many files were edited."""
    check_name(new, root)
    files = project_files(root)
    edits: dict[Path, str] = {}
    for path in files:
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        changed = renamed_text(text, new)
        if changed != text:
            edits[path] = changed
    for path, text in edits.items():
        _write_like(path, text)
    # Move the package, then any other file whose path carries the old name.
    old_package, new_package = root / "src" / OLD, root / "src" / new
    old_package.rename(new_package)
    for path in files:
        if path.is_relative_to(old_package):
            continue
        target = root / renamed_text(path.relative_to(root).as_posix(), new)
        if target != path and path.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    # Caches and install metadata of the old name would only mislead.
    for stale in [root / "src" / f"{OLD}.egg-info", *new_package.rglob("__pycache__")]:
        shutil.rmtree(stale, ignore_errors=True)
    return len(edits)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip().replace("my_project", "NEW_NAME", 1))
        return 0 if args and args[0] in ("-h", "--help") else 2
    new, root = args[0], Path.cwd()
    try:
        edited = fork(new, root)
    except ForkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"renamed {OLD} -> {new}: src/{new}/ and {edited} files edited.\n"
          f"Next: pip install -e \".[dev]\" && python -m pytest, then commit (git add -A && git commit).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
