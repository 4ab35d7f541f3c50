cwlVersion: v1.2
class: Workflow
doc: A file made on one worker and read on another (CHORDFLOW_CWL_REMOTE).
requirements:
  InlineJavascriptRequirement: {}
inputs:
  word: {type: string, default: remote}
outputs:
  made: {type: File, outputSource: make/made}
  upper: {type: File, outputSource: shout/upper}
steps:
  make:
    requirements:
      ResourceRequirement: {coresMin: 2}
    in: {word: word}
    out: [made]
    run:
      class: CommandLineTool
      inputs: {word: {type: string, inputBinding: {}}}
      baseCommand: echo
      stdout: made.txt
      outputs:
        made: {type: stdout}
  shout:
    in: {text: make/made}
    out: [upper]
    run:
      class: CommandLineTool
      inputs: {text: File}
      baseCommand: [tr, a-z, A-Z]
      stdin: $(inputs.text.path)
      stdout: upper.txt
      outputs:
        upper: {type: stdout}
