"""CWL v1.2 on chordflow: a CWL document becomes a chordflow workflow (docs/cwl.md).

- :mod:`chordflow.cwl.document`: loading, validating and packing a document and its
  job object (cwltool's loader, which also upgrades v1.0 and v1.1 documents);
- :mod:`chordflow.cwl.convert`: the packed document as a chordflow workflow, one
  chordflow step per CWL step (a scatter is a ``foreach``);
- :mod:`chordflow.cwl.inputs`: what a step's inputs are (sources, ``linkMerge``,
  ``pickValue``, ``default``, scatter, ``valueFrom``, ``when``), plain functions;
- :mod:`chordflow.cwl.execute`: one process run by cwltool in a subprocess (the
  command line, staging, containers, expressions are cwltool's);
- :mod:`chordflow.cwl.runner`: ``chordflow-cwl``, the conformance runner contract;
- :mod:`chordflow.cwl.values`: floats as written and integers beyond 8 bytes, kept
  through the run's JSON and MongoDB records;
- :mod:`chordflow.cwl.resources`: ResourceRequirement recorded, and routed to a queue
  (``CHORDFLOW_CWL_QUEUES``);
- :mod:`chordflow.cwl.secondary`: a workflow's input Files with their declared
  secondary files, and a tool's required ones checked, as cwltool's workflow engine;
- :mod:`chordflow.cwl.remote`: files between steps through a remote of the data plane
  (``CHORDFLOW_CWL_REMOTE``) instead of a shared directory.
"""
