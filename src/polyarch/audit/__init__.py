"""``polyarch audit``: for each image a fleet uses and each host of the fleet, what the host would run.

One job per module; ``cli/audit.py`` wires them (it reads flags and environment and passes typed values down):

* ``model``: the values (``Host``, ``ImageUse``, ``Verdict``, ``AuditRow``, ``AuditReport``);
* ``decide``: pure per image × host decision (native, emulated, missing, unknown);
* ``table``: the report for image uses × hosts, images looked up through a ``PlatformLookup``;
* ``resolve``: the ``PlatformLookup`` over ``polyarch.sources`` (local store, then registries; any location);
* ``render``: the report as a text table or JSON;
* ``hosts``: the hosts file, and asking a host its platform over ssh;
* ``inputs``: compose files (with their ``.env``) and image lists → image uses;
* ``textfile``: bounded reading and YAML parsing of those files.
"""
