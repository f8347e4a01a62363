"""The solver: runs the ops graph the frontend plans, with a persistent cache, and hands back layer stacks.

Modules, bottom up:

- ``state``: ``Layer`` (blob descriptor + diff_id) and ``State`` (a vertex's result: a layer stack, or a host
  directory for the build context / inline files / downloads; its persistent cache ``key``; ``added`` = the layer
  the step put on its root, None when it changed nothing).
- ``cachekey``: pure key functions (vertex kind + identity fields + input keys + resolved facts: the image
  manifest digest a ref resolved to, content hashes of COPY sources — never mtimes, never descriptions).
- ``cache``: ``BuildCache`` (SQLite ``<root>/buildcache.db``): key → layer (or "no layer"), and file content
  hashes keyed by stat signature; ``enabled=False`` for ``--no-cache``.
- ``rootview``: the paths of a layer stack without extracting it (COPY destination checks, chown names).
- ``copylayer``: COPY/ADD/WORKDIR layers written from the source tree alone (reproducible tar; platform
  independent when the sources are, so every platform gets the same blob).
- ``http``, ``git``: ``ADD URL`` and ``ADD git-repo`` sources.
- ``inline``: heredoc files written into a fresh scratch directory (one path component each, no-follow opens).
- ``ctxview``: the context as a ``RUN --mount=type=bind`` sees it (``.dockerignore`` applied, hard links).
- ``executor``: ``Executor`` maps each vertex kind to worker/content calls (RUN through an ``ExecRunner``, the
  adapter to ``polyarch.worker.runc`` lives in ``polyarch.pipeline.runexec``).
- ``ahead``: the WORKDIR/COPY steps on a ``FROM`` image whose layers the executor writes while the image is
  still being pulled (on a root without it; a step takes such a layer only when its own entries are equal).
- ``scheduler``: ``Solver.solve(roots)`` — topological, one future per vertex digest (identical work across
  platforms and targets runs once), at most CPU-count steps at a time, progress events, first error wins.

Entry points for commands (``polyarch.pipeline.run``): ``build_image(store, BuildRequest, progress=…)`` for one
Dockerfile, ``build_many(store, [BuildRequest…], progress=…)`` for bake (all targets planned, then solved
together per context directory, all or nothing), ``solve_plans(store, platform_plans, contexts=…, …)`` to solve
plans made elsewhere. ``polyarch.exporters.assemble.assemble`` turns states into images + index;
``polyarch.exporters.dispatch.export`` writes them out.
"""
