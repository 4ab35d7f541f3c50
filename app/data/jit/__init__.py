"""Just-in-time tiers: the replaced data-staging service's job, done right.

A tier is a primary (fast, near the compute) and a secondary (the origin) remote folder
with a capacity in bytes. An event naming files makes them present on the primary,
copying the missing ones from the secondary and evicting least recently used files to
stay under capacity, never one an unfinished event still needs or a run is reading.

- ``events``: the replaced service's Argo workflow events, and plain JSON.
- ``tiers``: ``CHORDFLOW_JIT_TIERS``, and which tier an event means.
- ``state``: a tier's cache state and each change to it, as pure functions.
- ``store``: that state in MongoDB, changed only by compare-and-set on one document.
- ``transfers``: the rclone commands (sizes, copies, deletes).
- ``replicate``: the loop that makes an event's files present (the ``jit`` module's).
- ``runs``: an event as a chordflow run of its own (recorded, retried, cancellable).
- ``reads``: reading through a tier (``stage_in: [{tier: ...}]``).
- ``runtime``: this process's tiers and store.
"""
