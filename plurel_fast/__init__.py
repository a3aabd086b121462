"""plurel_fast: fast, faithful synthetic relational databases (the PluRel method)."""
