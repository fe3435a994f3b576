"""Generators: the API a generator implements (:mod:`~synthgen.generators.base`), how installed ones are
found (:mod:`~synthgen.generators.registry`, entry points), and the built-ins, registered through the same
``synthgen.generators`` entry points as any plugin."""
