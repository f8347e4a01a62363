"""Every output of a build: the local image store, OCI/docker archives, local/tar trees, registry pushes and the
build cache. ``dispatch.export`` is the one entry ``polyarch build`` and ``polyarch bake`` call; each output type
has one ``Exporter`` (``exporter.py``), which receives its collaborators (image store, registry client factory,
``SOURCE_DATE_EPOCH``) and never makes them. Nothing is imported here, so ``polyarch --help`` stays fast.
"""
