"""The console as a person uses it: Debian's Chromium, driven by Playwright, against real servers.

Two nodes on loopback (tests/pair.py): node-a pushes collection ``alpha`` to
node-b under egress ``max_tlp = "green"``; node-b's ingress refuses tools at
first, so one object becomes a dead letter on node-a.  In the browser: sign in,
publish a bundle, search for its IP, open the indicator, follow its relationship
to the TLP:AMBER malware and read why node-b did not get it, retry the dead
letter after node-b's operator relaxed its policy, read the audit, sign out;
a form posted without its CSRF token is refused.

Chromium comes from Debian (``apt-get install chromium``; .ci/run installs it).
Without it the tests skip, except under CI (``CI=true``), where they fail.  A
failed test leaves a screenshot of its page in ``var/test-screenshots/``.  With
``TAXII_NODE_SCREENSHOTS=DIR`` the walk-through also saves the README's
screenshots there (``make screenshots``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node.store import objects
from node.tlp import TLP, TLP2_MARKING_IDS
from tests.nodes import ADMIN_PASSWORD, COLLECTIONS
from tests.pair import Pair, make_pair, start_node

CHROMIUM = Path("/usr/bin/chromium")
ALPHA = COLLECTIONS["alpha"]
GREEN, AMBER = TLP2_MARKING_IDS[TLP.GREEN], TLP2_MARKING_IDS[TLP.AMBER]
T = "2026-04-01T08:00:00.000Z"
IP = "198.51.100.23"
INDICATOR = "indicator--a1a1a1a1-0000-4000-8000-000000000001"
MALWARE = "malware--a1a1a1a1-0000-4000-8000-000000000002"
RELATIONSHIP = "relationship--a1a1a1a1-0000-4000-8000-000000000003"
TOOL = "tool--a1a1a1a1-0000-4000-8000-000000000004"
IDENTITY = "identity--a1a1a1a1-0000-4000-8000-000000000005"
REPORT = "report--a1a1a1a1-0000-4000-8000-000000000006"


def _sdo(kind: str, object_id: str, **extra) -> dict:
    return {"type": kind, "spec_version": "2.1", "id": object_id, "created": T, "modified": T,
            **extra}  # fmt: skip


def bundle() -> dict:
    return {
        "type": "bundle",
        "id": "bundle--a1a1a1a1-0000-4000-8000-0000000000ff",
        "objects": [
            _sdo("identity", IDENTITY, name="CERT Alpha", identity_class="organization",
                 object_marking_refs=[GREEN]),
            _sdo("indicator", INDICATOR, name="Dropper C2 at 198.51.100.23",
                 description="Beacons every 60 s over HTTPS.",
                 pattern=f"[ipv4-addr:value = '{IP}']", pattern_type="stix", valid_from=T,
                 indicator_types=["malicious-activity"], labels=["c2"],
                 created_by_ref=IDENTITY, object_marking_refs=[GREEN]),
            _sdo("malware", MALWARE, name="Nightjar loader", is_family=True,
                 malware_types=["dropper"], created_by_ref=IDENTITY,
                 object_marking_refs=[AMBER]),
            _sdo("relationship", RELATIONSHIP, relationship_type="indicates",
                 source_ref=INDICATOR, target_ref=MALWARE, created_by_ref=IDENTITY,
                 object_marking_refs=[GREEN]),
            _sdo("report", REPORT, name="Nightjar campaign, week 14", published=T,
                 object_refs=[INDICATOR, MALWARE, RELATIONSHIP], created_by_ref=IDENTITY,
                 object_marking_refs=[GREEN]),
            # Unmarked: the Publish form adds TLP:GREEN to it.
            _sdo("tool", TOOL, name="rclone", tool_types=["exfiltration"]),
        ],
    }  # fmt: skip


def _chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser():
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = make_pair(
        tmp_path,
        a={"alpha": {"direction": "push", "egress": {"max_tlp": "green"}}},
        b={"alpha": {"direction": "pull", "ingress": {"types_deny": ["tool"]}}},
    )
    try:
        yield pair
    finally:
        pair.stop()


SCREENSHOTS_OF_FAILURES = Path(__file__).parent.parent / "var" / "test-screenshots"


@contextmanager
def browser_page(browser, request, width: int, height: int) -> Iterator:
    """A page in a fresh browser context; when the test fails, a screenshot of it is
    kept in var/test-screenshots/ (the report comes from the hook in conftest.py)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    opened = context.new_page()
    try:
        yield opened
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            SCREENSHOTS_OF_FAILURES.mkdir(parents=True, exist_ok=True)
            path = SCREENSHOTS_OF_FAILURES / f"{request.node.name}.png"
            opened.screenshot(path=str(path), full_page=True)
            print(f"screenshot of the failed page: {path}")
        context.close()


@pytest.fixture
def page(browser, request):
    with browser_page(browser, request, 1100, 900) as opened:
        yield opened


@pytest.fixture
def narrow_page(browser, request):
    with browser_page(browser, request, 360, 740) as opened:
        yield opened


def _save_screenshot(page, name: str) -> None:
    directory = os.environ.get("TAXII_NODE_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / name), full_page=True)


def sign_in(page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/collections$"))


def assert_page_shows(page, *needles: str, seconds: float = 10.0) -> None:
    """Assert the page's HTML holds every needle, once the navigation a click started
    has loaded: right after a click, ``page.content()`` may still be the old page, or
    empty while the new one commits."""
    from playwright.sync_api import Error as PlaywrightError

    html = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            html = page.content()
        except PlaywrightError:  # navigating: the document is being replaced
            html = ""
        if all(needle in html for needle in needles):
            return
        time.sleep(0.1)
    missing = [needle for needle in needles if needle not in html]
    raise AssertionError(f"{page.url} does not show {missing}")


def publish(page, tmp_path: Path) -> None:
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(bundle()))
    page.get_by_role("link", name="Publish").click()
    page.get_by_label("Collection").select_option(label="alpha")
    page.get_by_label("STIX 2.1 bundle").set_input_files(str(path))
    page.get_by_label("Add a TLP marking").select_option("green")
    page.get_by_role("button", name="Validate and publish").click()
    assert_page_shows(page, "6 succeeded, 0 failed")


def relax_ingress(pair: Pair) -> None:
    """node-b's operator lifts the tool ban (edit the config, restart the server)."""
    config = pair.b.config_path
    config.write_text(config.read_text().replace('types_deny = ["tool"]', "types_deny = []"))
    pair.b.stop()
    start_node(pair.b)


def test_an_analyst_day_in_the_console(pair: Pair, page, tmp_path: Path) -> None:
    base = pair.a.base_url
    sign_in(page, base)
    publish(page, tmp_path)
    results = pair.run_once(pair.a)
    assert sum(r.dead_lettered for r in results) == 1  # node-b refused the tool

    # Search for the IP and open the indicator.
    page.get_by_role("link", name="Objects").click()
    page.get_by_label("Text").fill(IP)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Dropper C2 at 198.51.100.23").click()
    assert page.locator("h1").inner_text() == "Dropper C2 at 198.51.100.23"
    assert "TLP:GREEN" in page.locator(".badges").inner_text()
    _save_screenshot(page, "console-object.png")

    # Follow the relationship to the malware, and read why node-b did not get it.
    page.get_by_role("link", name="Nightjar loader").first.click()
    assert page.locator("h1").inner_text() == "Nightjar loader"
    sharing = page.locator("section", has=page.get_by_role("heading", name="Sharing"))
    assert "withheld" in sharing.inner_text() and "tlp.max" in sharing.inner_text()
    recorded = sharing.locator("table").nth(1).inner_text()
    assert "node-b" in recorded and "withheld" in recorded

    # The dead letter: node-b refused the tool; after its operator relaxes the
    # ingress policy, a retry delivers it.
    page.get_by_role("link", name="Sharing").click()
    assert_page_shows(page, TOOL, "types.deny")
    _save_screenshot(page, "console-sharing.png")
    relax_ingress(pair)
    page.get_by_role("button", name=re.compile(r"^Retry dead letter")).click()
    assert "sent to node-b" in page.locator(".flash").inner_text()
    assert page.locator("table.dead").count() == 0  # the one dead letter is gone
    with pair.store(pair.b).read() as connection:
        assert objects.latest(connection, ALPHA, TOOL) is not None

    # The audit: the retry, and the withholding, newest first; the chain intact.
    page.get_by_role("link", name="Audit").click()
    assert_page_shows(page, "Chain intact")
    first_row = page.locator("table.audit tbody tr").first.inner_text()
    assert "dead-letter-retried" in first_row
    page.get_by_label("Rule").fill("tlp.max")
    page.get_by_role("button", name="Filter").click()
    assert_page_shows(page, MALWARE)

    # A form posted without its CSRF token is refused, even with a valid session.
    forged = page.request.post(f"{base}/ui/sign-out", form={"user": "admin"})
    assert forged.status == 403
    page.reload()
    assert page.get_by_role("button", name="Sign out").is_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in"))
    page.goto(f"{base}/ui/audit")
    assert "/ui/sign-in" in page.url


def test_the_console_reads_in_a_narrow_window_with_the_keyboard(pair: Pair, narrow_page):
    page = narrow_page
    page.goto(f"{pair.a.base_url}/ui/sign-in")
    # The user name field takes the focus by itself (autofocus), once the page is
    # ready: under load, keys typed before that were lost.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'user'")
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/collections$"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways ({width} px)"
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_chromium_is_installed_under_ci() -> None:
    """CI must run the browser tests, never skip them."""
    if os.environ.get("CI") != "true":
        pytest.skip("not under CI")
    assert CHROMIUM.exists() and shutil.which("chromium"), "apt-get install -y chromium"
