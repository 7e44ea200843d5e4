"""The ``mqlab`` commands (dispatched by :mod:`lab.cli`): ``compare``, ``broker``, the demo, and
what they share (:mod:`lab.commands.usage`)."""
