cwlVersion: v1.2
class: CommandLineTool
doc: Floats on the command line as they were written (1.23e5 prints 123000).
baseCommand: echo
inputs:
  small: {type: float, default: 0.00001, inputBinding: {position: 1}}
  written_e: {type: float, default: 1.23e5, inputBinding: {position: 2}}
  whole: {type: float, default: 123000.0, inputBinding: {position: 3}}
  from_job: {type: float, inputBinding: {position: 4}}
arguments: [-n]
stdout: floats.txt
outputs:
  floats: stdout
