"""Fixtures of the web page tests: an in-process registry with the page (Starlette TestClient, no socket) whose
verifier is the CLI's (``verify_image`` over the store), and a pusher over its API."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import bcrypt
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.registry.ui.imagepush import Pusher

from polyarch.cli.registry_ui import ui_options
from polyarch.platform import parse
from polyarch.registry.server import Authorizer, Htpasswd, Registry, RegistryConfig, TokenIssuer, create_app
from polyarch.registry.server.ui import HostPlatform, Verifier, WebUi

HOSTS = (HostPlatform("pi4", parse("linux/arm64")), HostPlatform("nuc", parse("linux/amd64")))


@dataclass
class Site:
    client: TestClient
    reg: Registry
    web: WebUi
    push: Pusher

    def settle(self) -> None:
        """Wait until every queued verification is done (pages never wait themselves)."""
        assert self.web.verdicts.wait_idle(30)


SiteFactory = Callable[..., Site]


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[SiteFactory]:
    opened: list[tuple[TestClient, Registry]] = []

    def make(*, delete: bool = True, read_only: bool = False, users: dict[str, str] | None = None,
             token: bool = False, viewers: tuple[str, ...] = (), verifier: Verifier | None = None) -> Site:
        root = tmp_path / f"site{len(opened)}"
        htpasswd = None
        if users:
            htpasswd = Htpasswd({u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)) for u, p in users.items()})
        auth = Authorizer(htpasswd, TokenIssuer() if token else None)
        reg = Registry(root, RegistryConfig(delete_enabled=delete, read_only=read_only), auth)
        options = ui_options(reg, reg.store, filesystem=True, hosts=HOSTS, viewers=viewers)
        if verifier is not None:
            options = replace(options, verifier=verifier)
        web = WebUi(reg, options)
        client = TestClient(create_app(reg, ui=web), follow_redirects=False)
        client.__enter__()
        opened.append((client, reg))
        basic = next(iter(users.items())) if users and not token else None
        return Site(client, reg, web, Pusher(client, basic))

    yield make
    for client, reg in opened:
        client.__exit__(None, None, None)
        reg.close()
