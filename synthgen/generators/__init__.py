"""Built-in generators; registered through the ``synthgen.generators`` entry points like any plugin."""
