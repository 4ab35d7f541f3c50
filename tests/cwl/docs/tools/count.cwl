cwlVersion: v1.2
class: CommandLineTool
doc: Counts the lines of a file that must come with its index (a secondary file).
requirements:
  ToolTimeLimit:
    timelimit: 60
  ResourceRequirement:
    coresMin: 1
inputs:
  data:
    type: File
    secondaryFiles: [.idx]
    inputBinding:
      position: 1
baseCommand: [wc, -l]
stdout: count.txt
outputs:
  lines:
    type: int
    outputBinding:
      glob: count.txt
      loadContents: true
      outputEval: $(parseInt(self[0].contents))
  report:
    type: File
    outputBinding:
      glob: count.txt
  index:
    type: string
    outputBinding:
      outputEval: $(inputs.data.secondaryFiles[0].basename)
