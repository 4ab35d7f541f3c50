"""CWL v1.2 on chordflow: a CWL document becomes a chordflow workflow (docs/cwl.md).

- :mod:`chordflow.cwl.document`: loading, validating and packing a document and its
  job object (cwltool's loader, which also upgrades v1.0 and v1.1 documents);
- :mod:`chordflow.cwl.convert`: the packed document as a chordflow workflow, one
  chordflow step per CWL step (a scatter is a ``foreach``);
- :mod:`chordflow.cwl.inputs`: what a step's inputs are (sources, ``linkMerge``,
  ``pickValue``, ``default``, scatter, ``valueFrom``, ``when``), plain functions;
- :mod:`chordflow.cwl.execute`: one process run by cwltool in a subprocess (the
  command line, staging, containers, expressions are cwltool's);
- :mod:`chordflow.cwl.runner`: ``chordflow-cwl``, the conformance runner contract.
"""
