"""The data-plane tests' servers: rclone's own, as remotes (tests/data/rclone_servers.py)."""

from tests.data.rclone_servers import (  # noqa: F401 - fixtures, found by name
    rclone_remotes,
    s3_remote,
    sftp_remote,
    webdav_remote,
)
