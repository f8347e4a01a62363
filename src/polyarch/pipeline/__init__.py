"""One build, orchestrated: plan (frontend) → solve (solver) → assemble (exporters.assemble), with collaborators
the caller makes (``deps.BuildDeps``); outputs are written afterwards by ``polyarch.exporters``."""
