"""Reports over a parsed and planned Dockerfile: the build checks (``checks``) and ``--call`` texts (``call``)."""
