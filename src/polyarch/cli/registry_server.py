"""``polyarch registry serve`` and ``polyarch registry gc``: the embedded OCI registry over the local store, or with
its blobs in S3 (``--config``, :mod:`polyarch.cli.registry_config`), its metadata in SQLite (the store's
``registry.db``) or PostgreSQL (``--database``/``database:``; replicas share it); a pull-through mirror of another
registry with ``--proxy-remote-url``/``proxy:`` (the upstream's client is made here)."""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.errors import UsageError

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient
    from polyarch.registry.server.metastore import MetadataStore
    from polyarch.registry.server.proxy import ProxyConfig
    from polyarch.registry.server.storage import BlobStorage

    from .registry_config import ProxySettings, S3Settings

__all__ = ["parse_duration", "registry"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``1h``, ``2d`` → seconds. :raises UsageError:"""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"invalid duration {text!r}", hint="use e.g. 30s, 10m, 1h or 2d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@click.group("registry")
def registry() -> None:
    """Run the embedded OCI registry over the local content store."""


@registry.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="distribution-style config.yml (http, auth, storage: filesystem or s3); flags and REGISTRY_* "
                   "variables override it.")
@click.option("--database", default=None, metavar="URL",
              help="Metadata database: sqlite (registry.db in the store, the default) or postgresql://… (shared by "
                   "replicas on the same storage).")
@click.option("--addr", default=None, help="HOST:PORT to listen on.  [default: 127.0.0.1:5000]")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="TLS private key (PEM).")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False, path_type=Path),
              help="Require client certificates signed by this CA (mTLS).")
@click.option("--htpasswd", type=click.Path(dir_okay=False, path_type=Path),
              help="Require Basic auth from this htpasswd file (bcrypt hashes only).")
@click.option("--token-auth", is_flag=True, help="Require bearer tokens from the built-in /token endpoint.")
@click.option("--token-key", type=click.Path(dir_okay=False, path_type=Path),
              help="HS256 signing key file (>= 32 bytes); default: a key generated at start.")
@click.option("--read-only", is_flag=True, default=None, help="Refuse pushes and deletes.")
@click.option("--delete-enabled", is_flag=True, default=None, help="Allow DELETE of manifests, tags and blob links.")
@click.option("--no-redirect", is_flag=True, default=None,
              help="Stream blobs from S3 storage instead of answering 307 to a presigned URL.")
@click.option("--upload-ttl", default=None, help="Expire idle upload sessions after this (limits.uploadttl).  "
              "[default: 1h]")
@click.option("--max-uploads-per-repo", default=None, type=click.IntRange(min=1),
              help="Open upload sessions a repository may have, over all replicas (limits.uploadsperrepo); more "
                   "answer 429 TOOMANYREQUESTS.  [default: 64]")
@click.option("--max-uploads-per-client", default=None, type=click.IntRange(min=1),
              help="Open upload sessions one client address may have, over all replicas (limits.uploadsperclient); "
                   "more answer 429 TOOMANYREQUESTS.  [default: 256]")
@click.option("--header-timeout", default="30s", show_default=True, help="Close connections whose request head "
              "is not complete within this.")
@click.option("--body-timeout", default="60s", show_default=True, help="Answer 408 when a request body stalls "
              "this long.")
@click.option("--proxy-remote-url", default=None, metavar="URL",
              help="Be a pull-through cache of this registry (e.g. https://registry-1.docker.io): pulls are fetched "
                   "and kept, pushes refused; the config file's proxy: section sets credentials and the tag ttl.")
@click.option("--proxy-allow-push", is_flag=True, default=None, help="Accept pushes on a pull-through cache.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--ui/--no-ui", "ui", default=None,
              help="Serve the web page at /ui/ (behind the same auth).  [default: on for a loopback address]")
@click.option("--hosts", "hosts_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Hosts file of 'polyarch audit': the web page filters images that would run emulated on one.")
@click.option("--ui-viewer", "ui_viewers", multiple=True, metavar="USER",
              help="A user who may look at the web page but never delete (repeatable).")
@pass_app
def serve(app: AppContext, config_file: Path | None, database: str | None, addr: str | None, tls_cert: Path | None, tls_key: Path | None,
          tls_client_ca: Path | None, htpasswd: Path | None, token_auth: bool, token_key: Path | None,
          read_only: bool | None, delete_enabled: bool | None, no_redirect: bool | None, upload_ttl: str | None,
          max_uploads_per_repo: int | None, max_uploads_per_client: int | None, header_timeout: str,
          body_timeout: str,
          proxy_remote_url: str | None, proxy_allow_push: bool | None, log_level: str, ui: bool | None, hosts_file: Path | None, ui_viewers: tuple[str, ...]) -> None:
    """Serve the local store as an OCI distribution registry.

    Local names are served at once: 'base/busybox:1' as repository base/busybox tag 1, and a leading registry
    host is dropped ('localhost:5000/app:1' is app:1). Pushed images are served back from the same store.
    """
    from polyarch.registry.server import Authorizer, Htpasswd, Registry, RegistryConfig, TokenIssuer
    from polyarch.registry.server import serve as srv
    from polyarch.registry.server.state import REDIRECT_MIN
    from polyarch.registry.server.uploads import MAX_PER_CLIENT, MAX_PER_REPO

    from .registry_config import ProxySettings, check_database, check_remote_url, load_serve_file

    conf = load_serve_file(config_file, app.env.registry_vars)
    db_url = check_database(database) if database is not None else conf.database
    proxy = conf.proxy
    if proxy_remote_url is not None:
        url = check_remote_url(proxy_remote_url)
        proxy = replace(proxy, remoteurl=url) if proxy is not None else ProxySettings(url)
    if proxy_allow_push:
        if proxy is None:
            raise UsageError("--proxy-allow-push needs --proxy-remote-url (or proxy.remoteurl in --config)")
        proxy = replace(proxy, allowpush=True)
    addr = addr or conf.addr or "127.0.0.1:5000"
    tls_cert, tls_key = tls_cert or conf.tls_cert, tls_key or conf.tls_key
    tls_client_ca, htpasswd = tls_client_ca or conf.tls_client_ca, htpasswd or conf.htpasswd
    read_only = bool(read_only if read_only is not None else conf.read_only)
    delete_enabled = bool(delete_enabled if delete_enabled is not None else conf.delete_enabled)
    redirect = conf.redirect and not no_redirect
    host, port = srv.parse_addr(addr)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = srv.tls_context(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    users = Htpasswd.load(htpasswd) if htpasswd is not None else None
    tokens = None
    if token_auth:
        key = None
        if token_key is not None:
            try:
                key = token_key.read_bytes().strip()
            except OSError as exc:
                raise UsageError(f"cannot read --token-key {token_key}: {exc.strerror}") from exc
        tokens = TokenIssuer(key)
    elif token_key is not None:
        raise UsageError("--token-key needs --token-auth")
    authorizer = Authorizer(users, tokens)
    from .registry_ui import load_ui_hosts, ui_enabled, ui_options

    with_ui = ui_enabled(ui, host)
    if hosts_file is not None and not with_ui:
        raise UsageError("--hosts is for the web page: add --ui")
    ui_hosts = load_ui_hosts(hosts_file, app.env.ssh) if hosts_file is not None else ()
    ttl = parse_duration(upload_ttl) if upload_ttl is not None else conf.upload_ttl or 3600.0
    config = RegistryConfig(read_only=read_only, delete_enabled=delete_enabled,
                            upload_ttl=ttl, idle_timeout=parse_duration(body_timeout),
                            max_uploads_per_repo=max_uploads_per_repo or conf.max_uploads_per_repo or MAX_PER_REPO,
                            max_uploads_per_client=max_uploads_per_client or conf.max_uploads_per_client
                            or MAX_PER_CLIENT,
                            redirect=redirect,
                            redirect_min=REDIRECT_MIN if conf.redirect_min is None else conf.redirect_min)
    store = app.store
    storage = _s3_storage(conf.s3) if conf.storage == "s3" and conf.s3 is not None else None
    where = f"s3://{conf.s3.bucket}/{conf.s3.rootdirectory.strip('/')}" if conf.s3 is not None else str(store.root)
    meta = _database(db_url) if db_url is not None else None
    upstream, mirror = _upstream(proxy, parse_duration(body_timeout)) if proxy is not None else (None, None)
    # SQLite in the store: one server per store. A shared database: replicas (sessions and gc go through it).
    with srv.single_instance(store.root) if meta is None else nullcontext(), \
            upstream if upstream is not None else nullcontext():
        reg = Registry(store, config, authorizer, storage, meta, upstream=upstream, proxy=mirror)
        web = None
        if with_ui:
            from polyarch.registry.server.ui import WebUi

            web = WebUi(reg, ui_options(reg, store, filesystem=storage is None, hosts=ui_hosts, viewers=ui_viewers))
        try:
            purged = reg.recover()
            warning = srv.exposure_warning(host, authorizer.enabled)
            if warning:
                click.echo(f"warning: {warning}", err=True)
            scheme = "https" if tls else "http"
            note = f" (purged {purged} upload sessions of a previous run)" if purged else ""
            if db_url is not None:
                from polyarch.registry.server.pgmeta import redact

                where += f" with metadata in {redact(db_url)}"
            if proxy is not None:
                where += f", a pull-through cache of {proxy.remoteurl}"
            click.echo(f"polyarch registry serving {where} on {scheme}://{addr}{note}", err=True)
            if web is not None:
                click.echo(f"web page: {scheme}://{addr}/ui/", err=True)
            srv.run(reg, host, port, tls=tls, log_level=log_level, header_timeout=parse_duration(header_timeout),
                    ui=web)
        finally:
            reg.close()


def _upstream(proxy: ProxySettings, idle_timeout: float) -> tuple[RegistryClient, ProxyConfig]:
    """The pull-through mirror's client of the upstream (bearer tokens, retries, resumed blob downloads: a few quick
    retries, the mirror's own client retries too) and its settings. :raises UsageError:"""
    import urllib.parse

    from polyarch.registry.client import RegistryClient
    from polyarch.registry.credentials import Credential, CredentialStore
    from polyarch.registry.endpoints import ClientOptions, HostConfig, is_loopback
    from polyarch.registry.server.proxy import ProxyConfig

    class UpstreamCredentials(CredentialStore):
        """The proxy section's credential for the upstream alone (never the docker config of whoever runs this)."""

        def __init__(self, host: str, credential: Credential | None) -> None:
            self.host, self.credential = host, credential

        def get(self, registry: str) -> Credential | None:
            return self.credential if registry.lower() == self.host else None

    parts = urllib.parse.urlsplit(proxy.remoteurl)
    host = parts.netloc
    hub = host in ("registry-1.docker.io", "index.docker.io", "docker.io", "registry.hub.docker.com")
    if parts.scheme == "https" and is_loopback(host):
        raise UsageError(f"proxy remote URL {proxy.remoteurl}: a loopback registry is reached over http",
                         hint=f"use http://{host}")
    if parts.scheme == "http" and hub:
        raise UsageError(f"proxy remote URL {proxy.remoteurl}: Docker Hub is reached over https")
    domain = "docker.io" if hub else host
    hosts = (HostConfig(host, http=True),) if parts.scheme == "http" and not is_loopback(host) else ()
    credential = Credential(proxy.username, proxy.password) if proxy.username and proxy.password else None
    client = RegistryClient(ClientOptions(hosts=hosts, retries=3, backoff=0.25, max_backoff=2.0, timeout=30.0),
                            UpstreamCredentials(domain, credential))
    return client, ProxyConfig(domain, tag_ttl=proxy.ttl, allow_push=proxy.allowpush, idle_timeout=idle_timeout)


def _database(url: str) -> MetadataStore:
    """PostgreSQL metadata (imports psycopg), migrated and reachable. :raises StoreError:"""
    from polyarch.registry.server.pgmeta import PostgresMetadata

    return PostgresMetadata(url)


def _s3_storage(s3: S3Settings) -> BlobStorage:
    """The s3 driver (imports boto3), checked against the bucket before serving. :raises StoreError:"""
    from polyarch.registry.server.storage.s3 import S3Options, S3Storage

    storage = S3Storage(S3Options(
        bucket=s3.bucket, region=s3.region, regionendpoint=s3.regionendpoint, rootdirectory=s3.rootdirectory,
        accesskey=s3.accesskey, secretkey=s3.secretkey, profile=s3.profile, secure=s3.secure,
        forcepathstyle=s3.forcepathstyle, ca_file=s3.cafile, part_size=s3.chunksize))
    storage.check()
    return storage


@registry.command("gc")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's config.yml: gc the storage (filesystem or s3) and database it names.")
@click.option("--database", default=None, metavar="URL",
              help="Metadata database: sqlite (the default) or the postgresql://… URL the registry uses.")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted.")
@click.option("--grace", default="1h", show_default=True,
              help="Keep unreferenced blobs and upload sessions younger than this.")
@click.option("--scrub", "do_scrub", is_flag=True, help="Also re-hash every blob and delete corrupt ones.")
@pass_app
def gc(app: AppContext, config_file: Path | None, database: str | None, dry_run: bool, grace: str,
       do_scrub: bool) -> None:
    """Delete blobs no registry manifest and no local name reaches (safe beside running registries: one gc at a
    time per database, pushes wait only for the final delete)."""
    from polyarch.registry.server import collect_garbage, scrub

    from .registry_config import check_database, load_serve_file

    grace_s = parse_duration(grace)
    conf = load_serve_file(config_file, app.env.registry_vars)
    db_url = check_database(database) if database is not None else conf.database
    storage = _s3_storage(conf.s3) if conf.storage == "s3" and conf.s3 is not None else None
    if do_scrub and storage is not None:
        raise UsageError("--scrub re-hashes the local store: not with s3 storage")
    store = app.store
    if do_scrub:
        bad = scrub(store, repair=not dry_run)
        for d in bad:
            click.echo(f"corrupt blob {d}{' (would delete)' if dry_run else ' deleted'}")
    meta = _database(db_url) if db_url is not None else None
    try:
        report = collect_garbage(store, grace=grace_s, dry_run=dry_run, storage=storage, meta=meta)
    finally:
        if meta is not None:
            meta.close()
    verb = "would delete" if dry_run else "deleted"
    for d in report.deleted:
        click.echo(f"{verb} {d}")
    click.echo(f"{verb} {len(report.deleted)} blobs ({report.bytes_freed} bytes), purged {report.uploads_purged} "
               f"upload sessions; {report.kept_recent} unreferenced blobs kept within the grace period")
