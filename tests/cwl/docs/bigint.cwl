cwlVersion: v1.2
class: CommandLineTool
doc: An integer beyond 8 bytes (a double written out), through the run's records.
inputs:
  n: {type: double, default: 4200000000000000000000000000000000000000000}
  m: {type: long, default: 4242424242}
baseCommand: echo
arguments: ['{"big": $(inputs.n), "small": $(inputs.m)}']
stdout: cwl.output.json
outputs:
  big: double
  small: long
