"""Publishing a RUN_DIR to the Hugging Face Hub: the privacy gate, the Hub client (bounded retries, one
commit), and ``publish`` itself. Reads the RUN_DIR through :mod:`synthgen.rundir` only."""
