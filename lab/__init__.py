"""The comparison lab: ``mqlab compare`` measures every implementation side by side.

Every figure comes from this run: the execution journal (:mod:`shared.journal`) the workers
write, the broker's management API (:mod:`testbed.management`), and wall-clock timing of the
implementation's own producer (:meth:`shared.impl.Implementation.publish_work`).
"""
