"""Dockerfile → build plan: the parsed instructions of ``polyarch.frontend.dockerfile`` become, per target
platform, a ``polyarch.ops`` graph plus the image config of the target stage (``plan.plan_build``).

How it is built: ``stage`` converts one stage by folding its instructions through handlers — pure functions of
``(StageState, instruction) → StageState`` over frozen values (``state``); one module per instruction family:
``scope`` (FROM, ARG and the global/automatic args), ``config`` (ENV, LABEL, WORKDIR, USER, CMD, …), ``copy_add``
(COPY/ADD sources), ``run`` (RUN argv and mounts); ``heredocs`` names and expands heredoc files. A stage another
one refers to (``FROM``, ``COPY --from``, ``RUN --mount=from=``) is converted on demand through the converter the
platform context carries, so no handler module imports the stage converter. Nothing here does I/O.
"""
