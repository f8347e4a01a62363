"""The web page in-process: views and their JSON, verdict cells from the real verifier, the host filter,
escaping of hostile names, 404s, login, read-only users, delete with confirmation and CSRF."""

from __future__ import annotations

import re
import time

from tests.registry.imagegen import make_test_image
from tests.registry.server.conftest import REPO
from tests.registry.ui.conftest import Site, SiteFactory

from polyarch.registry.server.ui import CellVerdict
from polyarch.registry.server.ui.sessions import COOKIE, Sessions

SCRIPT = "<script>alert(1)</script>"


def _populate(site: Site) -> dict[str, dict]:
    p = site.push
    out = {
        "multi": p.image("apps/web", "1.0", {"linux/amd64": "amd64", "linux/arm64": "arm64"},
                         labels={"org.opencontainers.image.title": SCRIPT}, annotations={"note": SCRIPT}),
        "bad": p.image("apps/web", "broken", {"linux/amd64": "amd64", "linux/arm64": "amd64"}),
        "x86": p.image("tools/only-x86", "latest", {"linux/amd64": "amd64"}),
    }
    p.sbom("apps/web", out["multi"], [("busybox", "1.36.1"), ("musl", "1.2.4"), (SCRIPT, "1")])
    site.settle()
    return out


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def _no_raw_script(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external asset"


def test_repositories_search_and_counts(make_site: SiteFactory) -> None:
    site = make_site()
    _populate(site)
    data = site.client.get("/ui/api/repos").json()
    rows = {r["name"]: r for r in data["repositories"]}
    assert rows["apps/web"]["tags"] == 2 and rows["tools/only-x86"]["tags"] == 1
    assert rows["apps/web"]["lastPush"] > 0
    assert [r["name"] for r in site.client.get("/ui/api/repos?q=TOOLS").json()["repositories"]] == ["tools/only-x86"]
    page = site.client.get("/ui/?q=tools")
    assert page.status_code == 200 and "tools/only-x86" in page.text and "apps/web" not in page.text
    assert "Content-Security-Policy" in page.headers and "script-src" not in page.headers["Content-Security-Policy"]
    _no_raw_script(page.text)


def test_matrix_cells_are_verify_verdicts(make_site: SiteFactory) -> None:
    site = make_site()
    _populate(site)
    data = site.client.get("/ui/api/matrix").json()
    assert data["platforms"] == ["linux/amd64", "linux/arm64"]
    cells = {f"{r['repo']}:{r['tag']}": {c["platform"]: c["state"] for c in r["cells"]} for r in data["rows"]}
    assert cells["apps/web:1.0"] == {"linux/amd64": "native", "linux/arm64": "native"}
    assert cells["apps/web:broken"] == {"linux/amd64": "native", "linux/arm64": "mismatch"}
    assert cells["tools/only-x86:latest"] == {"linux/amd64": "native", "linux/arm64": "missing"}
    sizes = [c["size"] for r in data["rows"] for c in r["cells"] if c["state"] != "missing"]
    assert all(s > 0 for s in sizes)
    html = site.client.get("/ui/matrix").text
    assert html.count('class="cell native"') == 4 and html.count('class="cell mismatch"') == 1
    assert html.count('class="cell missing">– missing') == 1


def test_verdicts_never_block_a_page(make_site: SiteFactory) -> None:
    site = make_site()
    site.web.verdicts.close()  # no worker: a new image stays pending, the page still answers at once
    site.push.image("slow/app", "1", {"linux/amd64": "amd64"})
    cells = site.client.get("/ui/api/matrix").json()["rows"][0]["cells"]
    assert cells[0]["state"] == "pending"


def test_host_filter_keeps_images_emulated_there(make_site: SiteFactory) -> None:
    site = make_site()
    _populate(site)
    data = site.client.get("/ui/api/matrix?host=pi4").json()
    assert [f"{r['repo']}:{r['tag']}" for r in data["rows"]] == ["tools/only-x86:latest"]
    assert data["hostPlatform"] == "linux/arm64" and data["hosts"] == ["pi4", "nuc"]
    assert site.client.get("/ui/api/matrix?host=nuc").json()["rows"] == []
    html = site.client.get("/ui/matrix?host=pi4").text
    assert "would run emulated on pi4" in html and "apps/web" not in html


def test_tag_page_shows_config_layers_referrers_and_escapes(make_site: SiteFactory) -> None:
    site = make_site()
    images = _populate(site)
    data = site.client.get("/ui/api/r/apps/web:1.0").json()
    assert data["digest"] == images["multi"]["digest"]
    assert data["annotations"] == {"note": SCRIPT}
    amd = next(p for p in data["platforms"] if p["platform"] == "linux/amd64")
    assert amd["config"]["entrypoint"] == ["/bin/app"] and amd["config"]["user"] == "1000:1000"
    assert "MODE=test" in amd["config"]["env"] and amd["history"][0]["createdBy"] == "COPY app /bin/app"
    assert len(amd["layers"]) == 1 and amd["layers"][0]["size"] > 0
    assert amd["verdict"]["state"] == "native"
    sbom = next(r for r in data["referrers"] if r.get("kind") == "sbom")
    assert {"name": "busybox", "version": "1.36.1"} in sbom["packages"]
    html = site.client.get("/ui/r/apps/web:1.0").text
    _no_raw_script(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # label, annotation and package name, escaped
    assert html.count("&lt;script&gt;") >= 3
    assert "polyarch pull testserver/apps/web:1.0" in html and "busybox" in html and "1000:1000" in html


def test_unknown_and_malformed_names_are_404_pages(make_site: SiteFactory) -> None:
    site = make_site()
    _populate(site)
    for path in ("/ui/r/nope/nothing", "/ui/r/apps/web:nope", "/ui/r/%3Cscript%3E:1", "/ui/r/apps/web:%3Cscript%3E",
                 "/ui/r/Apps/Web:1.0", "/ui/delete/apps/web:nope", "/ui/r/a/../b:1"):
        r = site.client.get(path)
        assert r.status_code == 404, path
        assert "Not found" in r.text and "<script" not in r.text.lower() and "Traceback" not in r.text
    assert site.client.get("/ui/api/r/nope:1").status_code == 404
    assert site.client.get("/ui/r/apps/web").status_code == 200


def test_delete_needs_confirmation_and_csrf(make_site: SiteFactory) -> None:
    site = make_site()
    _populate(site)
    tag_page = site.client.get("/ui/r/apps/web:broken").text
    assert 'href="/ui/delete/apps/web:broken"' in tag_page
    confirm = site.client.get("/ui/delete/apps/web:broken")
    assert confirm.status_code == 200 and "Delete apps/web:broken?" in confirm.text
    token = _csrf(confirm.text)
    assert site.client.post("/ui/delete/apps/web:broken", data={"csrf": "forged"}).status_code == 403
    assert site.client.post("/ui/delete/apps/web:broken").status_code == 403
    assert site.client.get("/v2/apps/web/manifests/broken").status_code == 200
    done = site.client.post("/ui/delete/apps/web:broken", data={"csrf": token})
    assert done.status_code == 303 and done.headers["location"] == "/ui/r/apps/web?deleted=broken"
    assert site.client.get("/v2/apps/web/manifests/broken").status_code == 404
    assert "Tag broken deleted." in site.client.get(done.headers["location"]).text
    other = make_site().client  # another browser: its own session, the token above is not valid there
    assert other.post("/ui/delete/apps/web:1.0", data={"csrf": token}).status_code in (403, 404)


def test_no_delete_when_disabled_or_read_only(make_site: SiteFactory) -> None:
    site = make_site(delete=False)
    _populate(site)
    assert "/ui/delete/" not in site.client.get("/ui/r/apps/web:1.0").text
    r = site.client.get("/ui/delete/apps/web:1.0")
    assert r.status_code == 403 and "not enabled" in r.text
    assert site.client.post("/ui/delete/apps/web:1.0", data={"csrf": "x"}).status_code == 403
    ro = make_site(read_only=True, delete=True)  # takes no push: a local store name is what it serves
    make_test_image(ro.reg.store.root, "base/busybox:1", platforms=("linux/amd64",), layer_sizes=(100,))
    assert ro.client.get("/ui/api/matrix").json()["rows"][0]["tag"] == "1"
    assert "/ui/delete/" not in ro.client.get("/ui/r/base/busybox:1").text
    assert ro.client.get("/ui/delete/base/busybox:1").status_code == 403
    assert "disabled (registry is read-only)" in ro.client.get("/ui/gc").text


def test_login_session_and_read_only_viewer(make_site: SiteFactory) -> None:
    site = make_site(users={"admin": "pw-admin", "guest": "pw-guest"}, viewers=("guest",))
    _populate(site)
    c = site.client
    c.auth = None
    r = c.get("/ui/matrix?q=web")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/matrix%3Fq%3Dweb"
    assert c.get("/ui/api/repos").status_code == 401
    assert c.get("/ui/api/repos", auth=("guest", "pw-guest")).status_code == 200
    login = c.get("/ui/login")
    assert '<label for="user">' in login.text and '<label for="password">' in login.text
    bad = c.post("/ui/login", data={"user": "admin", "password": "nope", "next": "/ui/"})
    assert bad.status_code == 401 and "Wrong user name or password." in bad.text
    evil = c.post("/ui/login", data={"user": "guest", "password": "pw-guest", "next": "//evil.example/"})
    assert evil.status_code == 303 and evil.headers["location"] == "/ui/"
    assert "/ui/delete/" not in c.get("/ui/r/apps/web:1.0").text  # guest is a viewer
    assert c.get("/ui/delete/apps/web:1.0").status_code == 403
    c.cookies.clear()
    ok = c.post("/ui/login", data={"user": "admin", "password": "pw-admin", "next": "/ui/r/apps/web:1.0"})
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/r/apps/web:1.0"
    assert "httponly" in ok.headers["set-cookie"].lower() and "samesite=strict" in ok.headers["set-cookie"].lower()
    page = c.get("/ui/r/apps/web:1.0")
    assert page.status_code == 200 and "/ui/delete/apps/web:1.0" in page.text and "admin" in page.text
    c.post("/ui/logout", data={"csrf": _csrf(page.text)})
    assert c.get("/ui/").status_code == 303


def test_token_mode_uses_the_login_form(make_site: SiteFactory) -> None:
    site = make_site(users={"admin": "pw-admin"}, token=True)
    c = site.client
    assert c.get("/ui/").status_code == 303
    assert c.post("/ui/login", data={"user": "admin", "password": "pw-admin"}).status_code == 303
    assert c.get("/ui/").status_code == 200
    assert c.get("/v2/_catalog").status_code == 401  # the API still wants its bearer token


def test_gc_status_and_home_redirect(make_site: SiteFactory) -> None:
    site = make_site()
    r = site.client.post("/v2/apps/x/blobs/uploads/")
    assert r.status_code == 202
    data = site.client.get("/ui/api/gc").json()
    assert data["uploadSessions"] == 1 and data["deleteEnabled"] is True
    assert "polyarch registry gc" in site.client.get("/ui/gc").text
    assert site.client.get("/").headers["location"] == "/ui/"
    css = site.client.get("/ui/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in css.text and "url(" not in css.text and "@import" not in css.text


def test_forms_from_another_site_are_refused(make_site: SiteFactory) -> None:
    site = make_site(users={"admin": "pw-admin"})
    _populate(site)
    c = site.client
    c.auth = None
    r = c.post("/ui/login", data={"user": "admin", "password": "pw-admin"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")
    assert c.post("/ui/login", data={"user": "admin", "password": "pw-admin"},
                  headers={"Origin": "http://testserver"}).status_code == 303
    token = _csrf(c.get("/ui/delete/apps/web:1.0").text)
    r = c.post("/ui/delete/apps/web:1.0", data={"csrf": token}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert c.get("/v2/apps/web/manifests/1.0", auth=("admin", "pw-admin")).status_code == 200


def test_verdict_details_from_the_image_are_escaped(make_site: SiteFactory) -> None:
    site = make_site(verifier=lambda e: CellVerdict("mismatch", '/bin/"><script>x</script>: expected arm64'))
    site.push.image("apps/evil", "1", {"linux/arm64": "amd64"})
    site.settle()
    html = site.client.get("/ui/matrix").text
    _no_raw_script(html)
    assert 'title="/bin/&#34;&gt;&lt;script&gt;x&lt;/script&gt;: expected arm64"' in html


def test_sessions_expire_and_stay_bounded() -> None:
    sessions = Sessions(ttl=0.05, max_sessions=3)
    first = sessions.create("a")
    assert sessions.get(first.id) == first and first.csrf_ok(first.csrf) and not first.csrf_ok("x")
    for user in "bcd":
        sessions.create(user)
    assert sessions.get(first.id) is None  # the oldest made room
    later = sessions.create("e")
    time.sleep(0.1)
    assert sessions.get(later.id) is None and sessions.get("x" * 200) is None


def test_templates_and_stylesheet_are_package_data() -> None:
    """pyproject's package-data globs cover every file the page loads (an installed wheel has them)."""
    text = (REPO / "pyproject.toml").read_text()
    globs = re.search(r'"polyarch\.registry\.server\.ui" = \[([^\]]*)\]', text)
    assert globs, "package-data for polyarch.registry.server.ui"
    patterns = re.findall(r'"([^"]+)"', globs.group(1))
    ui = REPO / "src/polyarch/registry/server/ui"
    files = [f.relative_to(ui) for d in ("templates", "static") for f in (ui / d).iterdir()]
    assert files and all(any(f.match(p) for p in patterns) for f in files)
