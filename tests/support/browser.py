"""Debian's chromium driven by Playwright, for the tests of the collector's page."""

import shutil
from typing import Any, Iterator

import pytest

__all__ = ["chromium"]


def _executable() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get)")


def chromium(*args: str) -> Iterator[Any]:
    """A headless Chromium (a generator for a fixture), launched with extra ``args``."""
    from playwright.sync_api import sync_playwright

    executable = _executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", *args]
        )
        yield browser
        browser.close()
