"""The web page in a real browser: Debian's headless Chromium driven by Selenium against a real
``polyarch registry serve`` (htpasswd, deletes on, ``--hosts``; the page on by default on loopback).

Logs in, searches, reads the coverage cells, filters by host, opens a tag, deletes a tag through the
confirmation page; checks accessibility on every page (every control labelled, landmarks, text contrast
>= 4.5:1 computed in the browser in light and dark schemes, and from the stylesheet's colours); writes a
screenshot of each page to ``test-artifacts/ui/`` (README: "Web page").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
from tests.registry.server.conftest import REPO, Server, start_server
from tests.registry.ui.imagepush import Pusher

from polyarch.registry.server.ui import render

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts" / "ui"
USER, PASSWORD = "admin", "correct horse"

# Text contrast of every element with text, against the first opaque background up its ancestors.
CONTRAST_JS = """
function rgb(s) { const m = s.match(/[\\d.]+/g); return m ? m.map(Number) : null; }
function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
function bg(el) { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
  if (c && (c.length < 4 || c[3] > 0)) return c; } return [255, 255, 255]; }
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const r = el.getBoundingClientRect();
  if (!own || r.width === 0 || r.height === 0) continue;
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) bad.push(el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
}
return bad;
"""
LABELS_JS = """
const bad = [];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  const labelled = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.closest('label')
    || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
  if (!labelled) bad.push(el.outerHTML.slice(0, 80));
}
return bad;
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  pi4: linux/arm64\n  nuc: linux/amd64\n")
    srv = start_server(tmp_path / "store", "--htpasswd", str(htpasswd), "--delete-enabled", "--hosts", str(hosts))
    yield srv
    srv.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _hex(text: str) -> tuple[int, int, int]:
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def _ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def lum(c: tuple[int, int, int]) -> float:
        f = [(v / 255) / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * f[0] + 0.7152 * f[1] + 0.0722 * f[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_stylesheet_colour_pairs_have_contrast() -> None:
    css = render.Renderer().stylesheet.decode()
    light, dark = css.split("@media (prefers-color-scheme: dark)", 1)
    pairs = [("fg", "bg"), ("muted", "bg"), ("link", "bg"), ("fg", "panel"), ("muted", "panel"), ("link", "panel"),
             ("ok-fg", "ok-bg"), ("bad-fg", "bad-bg"), ("none-fg", "none-bg"), ("wait-fg", "wait-bg"),
             ("btn-fg", "btn-bg"), ("danger-fg", "danger-bg")]
    for scheme in (light, dark):
        colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", scheme))
        for fg, bg in pairs:
            ratio = _ratio(_hex(colours[fg]), _hex(colours[bg]))
            assert ratio >= 4.5, f"{fg} on {bg}: {ratio:.2f}"


def _check_page(driver: WebDriver, name: str) -> None:
    """Accessibility checks of the page shown, in light and dark, and a screenshot of each."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert len(driver.find_elements(By.TAG_NAME, "main")) == 1, name
    assert driver.find_elements(By.TAG_NAME, "header") and driver.find_elements(By.TAG_NAME, "h1"), name
    assert driver.execute_script(LABELS_JS) == [], name
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        assert driver.execute_script(CONTRAST_JS) == [], f"{name} ({scheme})"
        driver.save_screenshot(str(ARTIFACTS / f"{name}-{scheme}.png"))
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert not driver.find_elements(By.TAG_NAME, "script")


def _click(driver: WebDriver, by: str, what: str) -> None:
    """Click what leads to another page, and wait until that page is there."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(old))


def _settled(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = httpx.get(f"{server.url}/ui/api/matrix", auth=(USER, PASSWORD), timeout=10).json()["rows"]
        if rows and all(c["state"] != "pending" for r in rows for c in r["cells"]):
            return
        time.sleep(0.2)
    raise AssertionError("verdicts did not settle")


def _cells(driver: WebDriver) -> dict[str, list[str]]:
    out = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "table.matrix tbody tr"):
        name = row.find_element(By.CSS_SELECTOR, "th a").text
        out[name] = [td.get_attribute("class").split()[-1] for td in row.find_elements(By.TAG_NAME, "td")]
    return out


def test_browser_login_search_matrix_tag_delete(server: Server, browser: WebDriver) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push = Pusher(client, (USER, PASSWORD))
        multi = push.image("apps/web", "1.0", {"linux/amd64": "amd64", "linux/arm64": "arm64"},
                           labels={"title": "<script>alert(1)</script>"}, annotations={"note": "<script>x</script>"})
        push.image("apps/web", "broken", {"linux/amd64": "amd64", "linux/arm64": "amd64"})
        push.image("tools/only-x86", "latest", {"linux/amd64": "amd64"})
        push.sbom("apps/web", multi, [("busybox", "1.36.1"), ("musl", "1.2.4")])
    _settled(server)
    d = browser
    d.get(f"{server.url}/ui/")
    assert "/ui/login" in d.current_url
    _check_page(d, "login")
    d.find_element(By.ID, "user").send_keys(USER)
    d.find_element(By.ID, "password").send_keys("wrong")
    _click(d, By.CSS_SELECTOR, "main button[type=submit]")
    assert "Wrong user name or password." in d.find_element(By.CSS_SELECTOR, "[role=alert]").text
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    _click(d, By.CSS_SELECTOR, "main button[type=submit]")
    assert d.find_element(By.TAG_NAME, "h1").text == "Repositories"
    names = [a.text for a in d.find_elements(By.CSS_SELECTOR, "main tbody a")]
    assert names == ["apps/web", "tools/only-x86"]
    _check_page(d, "repositories")

    d.find_element(By.ID, "q").send_keys("tools")
    _click(d, By.CSS_SELECTOR, "form.search button")
    assert [a.text for a in d.find_elements(By.CSS_SELECTOR, "main tbody a")] == ["tools/only-x86"]

    _click(d, By.LINK_TEXT, "Coverage")
    heads = [th.text for th in d.find_elements(By.CSS_SELECTOR, "table.matrix thead th")]
    assert heads == ["Image", "linux/amd64", "linux/arm64"]
    assert _cells(d) == {"apps/web:1.0": ["native", "native"], "apps/web:broken": ["native", "mismatch"],
                         "tools/only-x86:latest": ["native", "missing"]}
    _check_page(d, "coverage")
    d.find_element(By.CSS_SELECTOR, "#host option[value=pi4]").click()
    _click(d, By.CSS_SELECTOR, "form.search button")
    assert list(_cells(d)) == ["tools/only-x86:latest"]
    _check_page(d, "coverage-emulated-on-pi4")
    d.set_window_size(390, 844)  # a phone: the page fits, the table scrolls inside its box
    d.get(f"{server.url}/ui/matrix")
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    _check_page(d, "coverage-phone")
    d.set_window_size(1280, 900)

    d.get(f"{server.url}/ui/matrix")
    _click(d, By.LINK_TEXT, "apps/web:1.0")
    body = d.find_element(By.TAG_NAME, "main").get_attribute("textContent")
    assert "<script>alert(1)</script>" in body and "<script>x</script>" in body  # shown as text, not run
    assert "busybox" in body and "1.36.1" in body and "1000:1000" in body and "/bin/app" in body
    assert f"polyarch pull {server.host}/apps/web:1.0" in body
    _check_page(d, "tag")

    d.get(f"{server.url}/ui/r/apps/web:broken")
    _click(d, By.LINK_TEXT, "Delete this tag…")
    assert d.find_element(By.TAG_NAME, "h1").text == "Delete apps/web:broken?"
    _check_page(d, "delete-confirm")
    _click(d, By.CSS_SELECTOR, "button.danger")
    assert "Tag broken deleted." in d.find_element(By.CSS_SELECTOR, "[role=status]").text
    assert [a.text for a in d.find_elements(By.CSS_SELECTOR, "main tbody a")] == ["1.0"]
    assert httpx.get(f"{server.url}/v2/apps/web/manifests/broken", auth=(USER, PASSWORD)).status_code == 404
    _check_page(d, "repository")

    d.get(f"{server.url}/ui/r/apps/web:nope")
    assert d.find_element(By.TAG_NAME, "h1").text == "Not found"
    d.get(f"{server.url}/ui/gc")
    _check_page(d, "gc")
