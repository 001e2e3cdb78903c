"""The web page's files as shipped: no external references, small examples, all in the distribution.

No browser needed; these guard what the browser tests cannot see: a CDN link that a cached page would hide,
a file type that `pip install .` would leave out of the wheel (package data is matched by extension).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from tests.browser.conftest import REPO_ROOT, STATIC_DIR

#: Namespace names are identifiers, never fetched.
_NAMESPACES = {"http://www.w3.org/2000/svg"}
_URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*""", re.IGNORECASE)


def static_files() -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())


def test_page_files_reference_no_other_origin() -> None:
    for path in static_files():
        if path.suffix in (".html", ".css", ".js"):
            found = set(_URL.findall(path.read_text())) - _NAMESPACES
            assert not found, f"{path.relative_to(STATIC_DIR)} references another origin: {sorted(found)}"


def test_bundled_examples_stay_small() -> None:
    examples = list((STATIC_DIR / "examples").glob("*.png"))
    assert len(examples) >= 3
    assert sum(p.stat().st_size for p in examples) < 100_000


def test_every_page_file_is_package_data() -> None:
    """Each file's name matches a `[tool.setuptools.package-data]` pattern, so wheels and images carry it."""
    # A regex, not tomllib: Python 3.10 is supported and has no TOML reader.
    section = re.search(
        r'^\[tool\.setuptools\.package-data\]\s*^"\*"\s*=\s*\[([^\]]*)\]',
        (REPO_ROOT / "pyproject.toml").read_text(),
        re.MULTILINE,
    )
    assert section, 'pyproject.toml has no [tool.setuptools.package-data] "*" list'
    patterns = re.findall(r'"([^"]+)"', section.group(1))
    missing = [p.name for p in static_files() if not any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns)]
    assert not missing, f"not matched by package-data {patterns}: {missing}"
