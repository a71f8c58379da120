"""Debian's chromium driven by Playwright (never a downloaded browser)."""

from contextlib import contextmanager

from playwright.sync_api import sync_playwright

from tests.conftest import CHROMIUM


@contextmanager
def chromium():
    """Playwright's sync API runs an event loop while open, so the ORM is used only before and after.
    (Without chromium the `browser` marker skips the test, or fails it under RELAY_REQUIRE_SERVICES.)"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()
