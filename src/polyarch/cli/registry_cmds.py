"""``polyarch login``, ``logout``, ``pull``, ``push``, and the registry-client options other commands share.

Every registry client is made here (``make_client``): the environment's settings, the command line's
(``--insecure-registry``, ``--tls-ca``), the configuration file's ``[registry."host"]`` rules and docker's
``daemon.json`` insecure registries (``cli/config.py``), and an observer that shows retries (and, for ``pull``
and ``push``, per-blob progress: ``cli/transferprogress.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from polyarch.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from polyarch.cli.environment import Environment
    from polyarch.content.images import ImageStore
    from polyarch.oci.reference import Reference
    from polyarch.oci.spec import Descriptor
    from polyarch.progress import Progress
    from polyarch.registry.client import RegistryClient
    from polyarch.registry.credentials import CredentialStore
    from polyarch.registry.observer import TransferObserver

__all__ = ["RegistryFactory", "client_options", "login", "logout", "make_client", "progress_option", "pull", "push",
           "registry_factory", "reporting_to"]

F = TypeVar("F", bound=Callable[..., Any])


def client_options(f: F) -> F:
    """``--insecure-registry HOST`` (repeatable) and ``--tls-ca FILE``."""
    f = click.option("--tls-ca", "tls_ca", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="Extra CA certificate (PEM) to trust for registries (SSL_CERT_FILE is honoured too).")(f)
    f = click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST",
                     help="Allow plain http or unverified https for HOST (also POLYARCH_INSECURE_REGISTRIES, "
                          "the config file's [registry.\"HOST\"] and docker's daemon.json). "
                          "Loopback registries use http by default.")(f)
    return f


def progress_option(f: F) -> F:
    """``--progress auto|tty|plain|quiet`` of a transfer (per-blob lines or bars on stderr)."""
    return click.option("--progress", "progress", type=click.Choice(("auto", "tty", "plain", "quiet")), default="auto", show_default=True,
                        help="Per-layer progress on stderr: tty (live bars), plain (a line per layer), quiet; "
                             "retries are always shown.")(f)


def make_client(env: Environment, insecure: tuple[str, ...] = (), tls_ca: str | None = None, *,
                allow_nondistributable: bool = False, observer: TransferObserver | None = None,
                credentials: CredentialStore | None = None) -> RegistryClient:
    """A client from the environment ``env`` (``AppContext.env``), the configuration file it points at and these
    options (``allow_nondistributable`` only ever turns it on), with the credentials ``DOCKER_CONFIG`` names
    (or ``credentials``: a builder node's, forwarded by the client).
    ``observer`` (default: retry lines on stderr) hears of retries and blob transfers.

    :raises ConfigError: the configuration file or docker's daemon.json is bad.
    """
    from polyarch.cli.config import load_config, registry_rules
    from polyarch.cli.transferprogress import TransferProgress
    from polyarch.registry.client import RegistryClient

    rules = registry_rules(load_config(env))
    options = env.client_options(insecure=(*insecure, *sorted(rules.insecure)), ca_file=tls_ca or "",
                                 allow_nondistributable=allow_nondistributable, hosts=rules.hosts,
                                 insecure_networks=rules.networks)
    return RegistryClient(options, credentials if credentials is not None else env.credentials(),
                          observer=observer if observer is not None else TransferProgress("retries", sys.stderr))


@dataclass(frozen=True)
class RegistryFactory:
    """``make_client`` with fixed options, for collaborators that open a client when they first need one; called
    with ``insecure=(HOST,)`` the client also trusts those hosts (an output's ``registry.insecure=true``)."""

    env: Environment
    insecure: tuple[str, ...] = ()
    tls_ca: str | None = None
    observer: TransferObserver | None = None
    credentials: CredentialStore | None = None

    def __call__(self, *, insecure: tuple[str, ...] = ()) -> RegistryClient:
        return make_client(self.env, (*self.insecure, *insecure), self.tls_ca, observer=self.observer,
                           credentials=self.credentials)


def registry_factory(env: Environment, insecure: tuple[str, ...] = (),
                     tls_ca: str | None = None) -> Callable[..., RegistryClient]:
    """A ``RegistryFactory`` of these options (retries shown on stderr until ``reporting_to`` a build's
    progress)."""
    return RegistryFactory(env, insecure, tls_ca)


def reporting_to(factory: Callable[..., RegistryClient], progress: Progress) -> Callable[..., RegistryClient]:
    """``factory`` whose clients report retries and finished blob transfers to a build's ``progress`` (as
    messages); a factory made elsewhere (tests) is returned as it is."""
    from polyarch.cli.transferprogress import ProgressObserver

    if isinstance(factory, RegistryFactory):
        return replace(factory, observer=ProgressObserver(progress))
    return factory


def _registry_host(text: str) -> str:
    from polyarch.errors import UsageError
    from polyarch.oci.reference import DEFAULT_DOMAIN

    host = text.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0].lower()
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"invalid registry {text!r}: expected a host[:port]")
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return DEFAULT_DOMAIN
    return host


@click.command("login")
@click.argument("registry", required=False, default="docker.io")
@click.option("-u", "--username", default=None, help="User name.")
@click.option("-p", "--password", default=None, help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@client_options
@pass_app
def login(app: AppContext, registry: str, username: str | None, password: str | None, password_stdin: bool,
          insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """Log in to a registry; credentials go to Docker's config.json (or its credential helper)."""
    from polyarch.errors import UsageError
    from polyarch.registry.credentials import Credential

    host = _registry_host(registry)
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise UsageError("user name and password must not be empty")
    cred = Credential(username, password)
    with make_client(app.env, insecure, tls_ca) as client:
        client.ping(host, cred)
    where = app.env.credentials().store(host, cred)
    click.echo(f"Login Succeeded (credentials saved in {where})")


@click.command("logout")
@click.argument("registry", required=False, default="docker.io")
@pass_app
def logout(app: AppContext, registry: str) -> None:
    """Forget the credentials of a registry."""
    host = _registry_host(registry)
    if app.env.credentials().erase(host):
        click.echo(f"Removing login credentials for {host}")
    else:
        click.echo(f"Not logged in to {host}")


@click.command("pull")
@click.argument("ref")
@click.option("--platform", "platforms", multiple=True, metavar="P[,P…]",
              help="Platform(s) to fetch (default: this host's), containerd matching.")
@click.option("--all-platforms", is_flag=True, help="Fetch every manifest of the index.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the digest (and no progress).")
@click.option("-a", "--all-tags", "all_tags", is_flag=True, help="Pull every tag of the repository REF names.")
@progress_option
@click.option("--allow-nondistributable-artifacts", "allow_nondistributable", is_flag=True,
              help="Fetch non-distributable (foreign) layers the registry lacks from the URLs the image names "
                   "(public http(s) addresses only, at most the declared size). Also "
                   "POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS=1.")
@client_options
@pass_app
def pull(app: AppContext, ref: str, platforms: tuple[str, ...], all_platforms: bool, quiet: bool, all_tags: bool,
         progress: str, allow_nondistributable: bool, insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """Fetch an image from a registry into the local store.

    A single-platform pull of a multi-platform image names a partial index holding only the fetched platforms
    (annotated io.polyarch.pulled-from with the remote index digest); pulling every platform stores the
    original index unchanged. The referrers of what was pulled (attestations, signatures) are kept with it.
    """
    from polyarch import platform as plat
    from polyarch.cli.transferprogress import transfer_progress
    from polyarch.content.pathindex import PendingIndexes
    from polyarch.errors import UsageError
    from polyarch.oci import reference
    from polyarch.solver.cache import BuildCache
    from polyarch.sources.transfer import pull_image

    if platforms and all_platforms:
        raise UsageError("--platform and --all-platforms are mutually exclusive")
    wanted = plat.parse_list(platforms)
    parsed = reference.parse(ref)
    if all_tags and (parsed.tag or parsed.digest is not None):
        raise UsageError("--all-tags takes a repository without a tag or digest")
    results = []
    with transfer_progress("quiet" if quiet else progress) as observer, \
            make_client(app.env, insecure, tls_ca, allow_nondistributable=allow_nondistributable,
                        observer=observer) as client:
        indexes = PendingIndexes()  # layer path indexes made while the layers are hashed; kept on success
        # -a: every tag, each named as the user wrote the repository plus the tag
        todo = [(f"{ref}:{t}", parsed.with_tag(t)) for t in client.list_tags(parsed)] if all_tags else \
            [(ref, parsed.defaulted())]
        if not todo:
            raise UsageError(f"{parsed.name} has no tags")
        for name, target in todo:
            # A refused or failed pull removes the blobs it fetched: the store is left as it was.
            with app.images.store.transaction():
                results.append((name, pull_image(client, target, app.images, name=name, platforms=wanted,
                                                  all_platforms=all_platforms, indexes=indexes)))
            _pull_referrers(client, target, app.images, results[-1][1].descriptor)
            with BuildCache.in_store(app.store.root) as cache:
                indexes.flush_to(cache)
    for name, result in results:
        if quiet:
            click.echo(str(result.descriptor.digest))
            continue
        what = ", ".join(map(str, result.platforms)) or "all platforms"
        extra = " (partial index)" if result.partial else ""
        click.echo(f"{name}: pulled {what}{extra}, {result.fetched_blobs} blobs fetched")
        click.echo(f"Digest: {result.descriptor.digest}")


@click.command("push")
@click.argument("ref")
@click.argument("dest", required=False)
@click.option("-q", "--quiet", is_flag=True, help="Print only the digest (and no progress).")
@click.option("-a", "--all-tags", "all_tags", is_flag=True,
              help="Push every local name of the repository REF names, each to its tag.")
@progress_option
@client_options
@pass_app
def push(app: AppContext, ref: str, dest: str | None, quiet: bool, all_tags: bool, progress: str,
         insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """Upload a local image (every platform it has) to a registry, as REF or DEST."""
    from polyarch.cli.transferprogress import transfer_progress
    from polyarch.oci.spec import is_manifest
    from polyarch.sources.referrers import push_referrers
    from polyarch.sources.transfer import push_image

    images = app.images
    todo = _local_tags(images, ref, dest) if all_tags else [(images.lookup(ref), _push_target(dest or ref))]
    results = []
    with transfer_progress("quiet" if quiet else progress) as observer, \
            make_client(app.env, insecure, tls_ca, observer=observer) as client:
        for desc, target in todo:
            results.append((target, push_image(images, desc, target, client=client)))
            # its attestations (store referrers of its manifests) go along; none: nothing sent
            subjects = [d.digest for d in images.walk(desc) if is_manifest(d.media_type)]
            push_referrers(images, subjects, target, client=client)
    for target, result in results:
        if quiet:
            click.echo(str(result.descriptor.digest))
            continue
        click.echo(f"{target}: pushed ({result.uploaded} uploaded, {result.mounted} mounted, "
                   f"{result.existed} already present)")
        click.echo(f"Digest: {result.descriptor.digest}")


def _pull_referrers(client: RegistryClient, ref: Reference, images: ImageStore, root: Descriptor) -> None:
    """The pulled image's referrers (attestations, signatures) kept with it; a registry that will not list or
    give them costs a warning, not the pull."""
    from polyarch.errors import PolyarchError
    from polyarch.sources.referrers import pull_referrers

    try:
        with images.store.transaction():  # a failure removes the referrer blobs fetched; nothing is kept
            pull_referrers(client, ref, images, root)
    except PolyarchError as exc:
        click.echo(f"warning: {ref}: referrers not pulled: {exc.message}", err=True)


def _push_target(text: str) -> Reference:
    from polyarch.oci import reference

    target = reference.parse(text)
    return target.defaulted() if not target.tag and target.digest is None else target


def _local_tags(images: ImageStore, repo_text: str, dest: str | None) -> list[tuple[Descriptor, Reference]]:
    """``push -a REPO``: every local name of REPO (normalized), each to its own tag, sorted by tag."""
    from polyarch.errors import NotFound, PolyarchError, UsageError
    from polyarch.oci import reference

    repo = reference.parse(repo_text)
    if dest or repo.tag or repo.digest is not None:
        raise UsageError("--all-tags takes one repository without a tag, digest or DEST")
    todo = []
    for name, desc in images.names():
        try:
            local = reference.parse(name)
        except PolyarchError:
            continue
        if local.tag and local.name == repo.name:
            todo.append((desc, repo.with_tag(local.tag)))
    if not todo:
        raise NotFound(f"no tag of {repo_text} in the local store", hint="'polyarch images' lists the names")
    return sorted(todo, key=lambda item: item[1].tag or "")
