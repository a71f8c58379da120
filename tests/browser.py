"""Debian's chromium driven by Playwright (never a downloaded browser)."""

from contextlib import contextmanager

from playwright.sync_api import sync_playwright

from tests.conftest import CHROMIUM

# Every Content-Security-Policy violation on a page, as a console line the test collects (the event carries what was
# blocked, by which directive; Chromium's own console text differs between versions), and counted in
# `window.cspViolations` for a test to wait on.
VIOLATION = "csp-violation: "
REPORT_VIOLATIONS = f"""window.cspViolations = 0;
document.addEventListener("securitypolicyviolation", (event) => {{
  window.cspViolations += 1;
  console.error("{VIOLATION}" + event.effectiveDirective + " blocked " + event.blockedURI + " on " + location.pathname);
}});"""


class WatchedBrowser:
    """A browser whose pages report the policy violations they meet into `violations` ("script-src-elem blocked
    inline on /t/…"). A test that provokes some reads them and clears the list: `chromium()` fails on any left."""

    def __init__(self, browser):
        self._browser = browser
        self.violations: list[str] = []

    def new_context(self, **options):
        context = self._browser.new_context(**options)
        context.add_init_script(REPORT_VIOLATIONS)
        context.on("console", self._console)
        return context

    def new_page(self, **options):
        return self.new_context(**options).new_page()

    def _console(self, message) -> None:
        if message.text.startswith(VIOLATION):
            self.violations.append(message.text.removeprefix(VIOLATION))


@contextmanager
def chromium():
    """Playwright's sync API runs an event loop while open, so the ORM is used only before and after.
    (Without chromium the `browser` marker skips the test, or fails it under RELAY_REQUIRE_SERVICES.)
    Every page opened must keep to its Content-Security-Policy."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        watched = WatchedBrowser(browser)
        yield watched
        browser.close()
    assert watched.violations == [], watched.violations
