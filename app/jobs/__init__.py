"""Jobs on other systems: what a step that is a job on a scheduler talks to.

A job service is submitted to once, then polled until the job ends (modules/job.py
runs that loop through the engine's wait, app/engine/waiting.py, so no worker is held
while a job runs). Each client speaks one protocol behind the same three calls
(:class:`~chordflow.jobs.base.JobClient`): ``submit``, ``status`` and ``kill``.

- :mod:`chordflow.jobs.bvbrc`: the BV-BRC app service's JSON-RPC (``AppService.
  start_app``, ``query_tasks``, ``kill_task``), which the replaced DAG engine used;
- :mod:`chordflow.jobs.http_jobs`: any scheduler with an HTTP submit URL and a status
  URL whose JSON says the job's state;
- :mod:`chordflow.jobs.polling`: submit, poll with backoff, time out, map the result;
- :mod:`chordflow.jobs.services`: the services and apps an admin configures.
"""

from chordflow.jobs.base import JobClient, JobStatus
from chordflow.jobs.polling import PollPolicy, run_job

__all__ = ["JobClient", "JobStatus", "PollPolicy", "run_job"]
