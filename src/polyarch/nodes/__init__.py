"""Builder instances and their nodes: the values (``model``), their one state file (``store``), the node driver
seam (``driver``) and the local host as a node (``local``)."""
