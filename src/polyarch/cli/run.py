"""``polyarch run``: start a local image's entrypoint once, under runc, native or through QEMU.

Meant for checking what a build produced (``polyarch run --platform linux/arm64 app:1`` prints what the arm64
image does on this host); not a container manager: no detach, no ports, the rootfs is thrown away afterwards.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options

if TYPE_CHECKING:
    from polyarch.oci.spec import Descriptor
    from polyarch.platform import Platform

__all__ = ["run"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--platform", "platform_text", default=None, help="Platform of the image to run (default: this host's).")
@click.option("--network", type=click.Choice(["default", "none"]), default="none", show_default=True,
              help="default: the host network; none: an empty network namespace.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Extra environment variables.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="User (name or uid[:gid]) inside the container.")
@click.option("--entrypoint", default=None, help="Replace the image's entrypoint.")
@click.option("--pull", "pull_policy", type=click.Choice(["missing", "always", "never"]), default="missing",
              show_default=True, help="Pull the image (its platform only) before running: when not in the store, "
                                      "always, or never.")
@client_options
@click.argument("ref")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_app
def run(app: AppContext, platform_text: str | None, network: str, env: tuple[str, ...], workdir: str | None,
        user: str | None, entrypoint: str | None, pull_policy: str, insecure: tuple[str, ...], tls_ca: str | None,
        ref: str, command: tuple[str, ...]) -> None:
    """Run the image REF (its entrypoint and cmd, or COMMAND) once and print its output.

    The platform is this host's unless --platform says otherwise; an image not in the local store is pulled
    first (that platform only), as docker run does. The exit status is the container's.
    """
    from polyarch import platform as plat
    from polyarch.cli.wiring import enter_rootless
    from polyarch.errors import BuildError, UsageError
    from polyarch.worker.runc import Runner, StepContext, StepSpec
    from polyarch.worker.snapshot import LayerRef, SnapshotStore

    enter_rootless(app)  # a normal user: its user namespace (worker/userns.py), before any thread
    wanted = plat.parse(platform_text) if platform_text else plat.host()
    images = app.images
    image = images.images(_local_or_pulled(app, ref, wanted, pull_policy, insecure, tls_ca), [wanted])[0]
    cfg = image.config.config
    head = (entrypoint,) if entrypoint is not None else (cfg.entrypoint or ())
    args = tuple(head) + (command or (cfg.cmd or () if entrypoint is None else ()))
    if not args:
        raise UsageError(f"{ref} has no entrypoint or cmd; give a COMMAND")
    for item in env:
        if "=" not in item:
            raise UsageError(f"--env {item!r}: expected KEY=VALUE")
    layers = [LayerRef(diff_id, blob) for diff_id, blob in zip(image.config.diff_ids, image.manifest.layers,
                                                               strict=True)]
    spec = StepSpec(args=args, context=StepContext(image.platform, instruction=f"run {ref}"),
                    env=(*cfg.env, *env), user=user if user is not None else cfg.user,
                    workdir=workdir or cfg.working_dir or "/", network=network)
    snapshots = SnapshotStore(app.store.root, app.store, driver=app.env.snapshotter_driver())
    with snapshots.prepare(layers) as active:
        try:
            Runner(app.store.root, app.env.runtime_options()).run(active.rootfs, spec, lambda line: click.echo(line))
        except BuildError as exc:
            code = getattr(exc, "step_exit_code", None)
            if code is None:
                raise
            sys.stdout.flush()
            sys.exit(code)


def _local_or_pulled(app: AppContext, ref: str, wanted: Platform, policy: str, insecure: tuple[str, ...] = (),
                     tls_ca: str | None = None) -> Descriptor:
    """The store's image REF; pulled (platform ``wanted`` only) when no such name is in the store, or always
    with ``policy`` ``always``. A local name is never replaced by a pull unless asked (``always``): a local
    image that lacks ``wanted`` is an error naming its platforms, as before."""
    from polyarch.cli.registry_cmds import make_client
    from polyarch.errors import NotFound
    from polyarch.oci import reference
    from polyarch.sources.transfer import pull_image

    if policy != "always":
        try:
            return app.images.lookup(ref)
        except NotFound:
            if policy == "never":
                raise
    click.echo(f"Pulling {ref} ({wanted})", err=True)
    with make_client(app.env, insecure, tls_ca) as client, app.images.store.transaction():
        return pull_image(client, reference.parse(ref).defaulted(), app.images, name=ref,
                          platforms=[wanted]).descriptor
