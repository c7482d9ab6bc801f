"""Internal helpers shared by every layer of octify (not public API).

The bottom of the import graph: ``octify.nn``, ``octify.fx``, ``octify.report`` and
``octify.cli`` import from here, and nothing here imports from them.

- :mod:`.validate`: the checks of user-given values, one message per kind of bad value.
- :mod:`.inputs`: ``example_inputs`` as the library takes them, and the default input.
- :mod:`.formatting`: numbers and sizes as every report and the command line print them.
"""
