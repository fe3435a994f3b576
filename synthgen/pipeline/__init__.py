"""From a recipe to a RUN_DIR: plan work items, run each step (schedule, journal, check, count), and
finalize the dataset atomically; plus what runs before spending (validate, estimate) and ``init``."""
