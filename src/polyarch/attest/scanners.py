"""Package scanners: pure functions from a package database's bytes to ``Package`` values.

API::

    dpkg_status(data, *, path, distro) -> list[Package]     # /var/lib/dpkg/status and status.d/* files
    apk_installed(data, *, path, distro) -> list[Package]   # /lib/apk/db/installed
    python_metadata(data, *, path) -> list[Package]         # *.dist-info/METADATA, *.egg-info/PKG-INFO
    go_binary(info, *, path) -> list[Package]               # a Go binary's embedded module info (goinfo.BuildInfo)
    rpm_database(data, *, path, distro) -> list[Package]    # rpmdb.sqlite or BerkeleyDB Packages (rpmdb.py)
    npm_package(data, *, path) -> list[Package]             # node_modules/[@scope/]NAME/package.json
    cargo_binary(data, *, path) -> list[Package]            # a Rust binary's cargo-auditable data (cargo.AuditData)
    os_release(data) -> Distro

Every input is untrusted (it comes from image layers): any bytes give a (possibly empty) list, never an
exception. Text is decoded as UTF-8 with replacement; a record without a name or version is skipped; at most
``MAX_RECORDS`` packages come from one file and field values are cut to ``MAX_FIELD`` characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from .cargo import AuditData
from .goinfo import BuildInfo
from .rpmdb import headers, parse_header

__all__ = ["MAX_FIELD", "MAX_RECORDS", "Distro", "Package", "apk_installed", "cargo_binary", "dpkg_status",
           "go_binary", "npm_package", "os_release", "purl", "python_metadata", "rpm_database"]

MAX_RECORDS = 100_000
MAX_FIELD = 4096


@dataclass(frozen=True, slots=True)
class Distro:
    """``/etc/os-release``: ``ID`` and ``VERSION_ID`` (empty when unknown)."""

    id: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class Package:
    """One package found in an image: ``kind`` is the purl type (deb, apk, rpm, pypi, golang, npm, cargo)."""

    kind: str
    name: str
    version: str
    purl: str
    source: str  # the file it was read from, absolute
    license: str = ""  # as declared, "" when unknown
    arch: str = ""
    layer: str = ""  # diff_id of the layer that added it (filled in by the layer scan)


def _q(text: str) -> str:
    return quote(text, safe=".-_~")


def purl(kind: str, name: str, version: str, *, namespace: str = "", qualifiers: dict[str, str] | None = None) -> str:
    """A package URL (purl spec): segments and the version percent-encoded, qualifiers sorted, empty ones left out."""
    parts = [_q(p) for p in namespace.split("/") if p] + [_q(name)]
    out = f"pkg:{kind}/" + "/".join(parts)
    if version:
        out += "@" + _q(version)
    quals = {k: v for k, v in sorted((qualifiers or {}).items()) if v}
    if quals:
        out += "?" + "&".join(f"{k}={_q(v)}" for k, v in quals.items())
    return out


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _cut(value: str) -> str:
    return value.strip()[:MAX_FIELD]


def _stanzas(text: str) -> list[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg status): ``Key: value`` lines, continuation lines start with a space."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
                if len(out) >= MAX_RECORDS:
                    return out
            cur, last = {}, ""
            continue
        if line[0] in " \t":
            continue  # continuation (descriptions, conffiles): nothing we read
        key, colon, value = line.partition(":")
        if colon and key and " " not in key:
            last = key.lower()
            if last not in cur:
                cur[last] = _cut(value)
    if cur:
        out.append(cur)
    return out


def os_release(data: bytes) -> Distro:
    """``ID`` and ``VERSION_ID`` of an os-release file (quotes removed)."""
    fields: dict[str, str] = {}
    for line in _text(data[:65536]).splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() in ("ID", "VERSION_ID"):
            fields[key.strip()] = _cut(value).strip("\"'")[:64]
    return Distro(fields.get("ID", ""), fields.get("VERSION_ID", ""))


def _distro_q(distro: Distro) -> str:
    return f"{distro.id}-{distro.version}" if distro.id and distro.version else distro.id


def dpkg_status(data: bytes, *, path: str, distro: Distro = Distro()) -> list[Package]:
    """Installed packages of a dpkg status file (``Status: … installed``; a stanza without Status counts, as in
    distroless ``status.d`` files)."""
    out: list[Package] = []
    for st in _stanzas(_text(data)):
        name, version = st.get("package", ""), st.get("version", "")
        status = st.get("status", "install ok installed")
        if not name or not version or not status.endswith(" installed"):
            continue
        arch = st.get("architecture", "")
        ns = distro.id or "debian"
        out.append(Package("deb", name, version, purl("deb", name, version, namespace=ns, qualifiers={
            "arch": arch, "distro": _distro_q(distro)}), path, "", arch))
    return out


def apk_installed(data: bytes, *, path: str, distro: Distro = Distro()) -> list[Package]:
    """Packages of an apk ``installed`` database (``P:`` name, ``V:`` version, ``A:`` arch, ``L:`` license)."""
    out: list[Package] = []
    for block in _text(data).split("\n\n"):
        rec: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":" and line[0] not in rec:
                rec[line[0]] = _cut(line[2:])
        name, version = rec.get("P", ""), rec.get("V", "")
        if not name or not version:
            continue
        arch = rec.get("A", "")
        ns = distro.id or "alpine"
        out.append(Package("apk", name, version, purl("apk", name, version, namespace=ns, qualifiers={
            "arch": arch, "distro": _distro_q(distro)}), path, rec.get("L", ""), arch))
        if len(out) >= MAX_RECORDS:
            break
    return out


def _pep503(name: str) -> str:
    out, dash = [], False
    for ch in name.lower():
        if ch in "-_.":
            if not dash:
                out.append("-")
            dash = True
        else:
            out.append(ch)
            dash = False
    return "".join(out)


def python_metadata(data: bytes, *, path: str) -> list[Package]:
    """The distribution a core-metadata file (``METADATA``/``PKG-INFO``) describes: Name, Version, and the
    license from ``License-Expression``, else ``License`` (one line), else a ``License ::`` classifier."""
    head = _text(data[:1 << 20]).split("\n\n", 1)[0]  # headers end at the first blank line; the body is the README
    fields: dict[str, str] = {}
    classifiers: list[str] = []
    for line in head.splitlines():
        if not line or line[0] in " \t":
            continue
        key, colon, value = line.partition(":")
        k = key.strip().lower()
        if not colon:
            continue
        if k == "classifier" and value.strip().startswith("License ::"):
            classifiers.append(_cut(value).rsplit("::", 1)[-1].strip())
        elif k not in fields:
            fields[k] = _cut(value)
    name, version = fields.get("name", ""), fields.get("version", "")
    if not name or not version:
        return []
    lic = fields.get("license-expression", "")
    if not lic:
        single = fields.get("license", "")
        lic = single if single and single.upper() != "UNKNOWN" and len(single) <= 100 else ""
    if not lic and classifiers:
        lic = classifiers[0]
    return [Package("pypi", name, version, purl("pypi", _pep503(name), version), path, lic)]


def go_binary(info: BuildInfo, *, path: str) -> list[Package]:
    """A Go binary's main module (when it has a version) and every dependency module, as ``golang`` purls;
    the Go toolchain itself as ``stdlib``."""
    out: list[Package] = []
    if info.go_version:
        out.append(Package("golang", "stdlib", info.go_version,
                           purl("golang", "stdlib", info.go_version), path))
    for mod in (info.main, *info.deps):
        if mod is None or not mod.path or not mod.version or mod.version == "(devel)":
            continue
        ns, _, name = mod.path.rpartition("/")
        out.append(Package("golang", mod.path, mod.version, purl("golang", name, mod.version, namespace=ns), path))
    return out


def rpm_database(data: bytes, *, path: str, distro: Distro = Distro()) -> list[Package]:
    """The packages of an rpm database (SQLite or BerkeleyDB hash; ``gpg-pubkey`` entries, which are imported
    keys, left out). The version is ``[EPOCH:]VERSION-RELEASE``; the purl (purl spec) carries the epoch, arch,
    source rpm (``upstream``) and distro as qualifiers, the distro id as namespace."""
    out: list[Package] = []
    for blob in headers(data):
        h = parse_header(blob)
        if h is None or h.name == "gpg-pubkey":
            continue
        name, vr = _cut(h.name), _cut(f"{h.version}-{h.release}" if h.release else h.version)
        version = f"{h.epoch}:{vr}" if h.epoch is not None else vr
        arch = _cut(h.arch)
        out.append(Package("rpm", name, version, purl("rpm", name, vr, namespace=distro.id, qualifiers={
            "arch": arch, "epoch": "" if h.epoch is None else str(h.epoch), "upstream": _cut(h.sourcerpm),
            "distro": _distro_q(distro)}), path, _cut(h.license), arch))
        if len(out) >= MAX_RECORDS:
            break
    return out


def _npm_license(doc: dict[str, object]) -> str:
    lic = doc.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if isinstance(lic, str):
        return _cut(lic)
    legacy = doc.get("licenses")  # the old form: [{"type": "MIT", "url": …}, …]
    if isinstance(legacy, list):
        types = [x.get("type") for x in legacy[:16] if isinstance(x, dict)]
        return _cut(" OR ".join(t for t in types if isinstance(t, str) and t))
    return ""


def npm_package(data: bytes, *, path: str) -> list[Package]:
    """The package a ``node_modules`` ``package.json`` describes (``name``, ``version``, ``license``; a scoped
    ``@scope/name`` becomes the purl's namespace)."""
    try:
        doc = json.loads(data[:1 << 20])
    except (ValueError, RecursionError):
        return []
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not _cut(name) or not _cut(version):
        return []
    name, version = _cut(name), _cut(version)
    scope, slash, bare = name.rpartition("/") if name.startswith("@") else ("", "", name)
    return [Package("npm", name, version, purl("npm", bare if slash else name, version, namespace=scope), path,
                    _npm_license(doc))]


def cargo_binary(data: AuditData, *, path: str) -> list[Package]:
    """Every crate a cargo-auditable Rust binary records, as ``cargo`` purls."""
    return [Package("cargo", c.name, c.version, purl("cargo", c.name, c.version), path) for c in data.crates]
