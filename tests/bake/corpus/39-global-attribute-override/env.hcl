# a data-only file: top-level attributes set variables (buildx's "global scope attributes")
WHOAMI = "myuser"
FOO    = "def-${WHOAMI}"
