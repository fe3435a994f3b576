"""What a RUN_DIR holds, for a person: metrics computed from its files, a terminal summary and a
self-contained HTML report. Reads the RUN_DIR through :mod:`synthgen.rundir` only."""
