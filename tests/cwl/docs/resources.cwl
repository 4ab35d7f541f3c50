cwlVersion: v1.2
class: Workflow
requirements:
  InlineJavascriptRequirement: {}
doc: A step that asks for 4 cores (routed by CHORDFLOW_CWL_QUEUES) and one that asks for none.
inputs:
  word: {type: string, default: heavy}
outputs:
  heavy: {type: string, outputSource: big/said}
  light: {type: string, outputSource: small/said}
steps:
  big:
    requirements:
      ResourceRequirement: {coresMin: 4, ramMin: 1024}
    in: {word: word}
    out: [said]
    run:
      class: CommandLineTool
      inputs: {word: {type: string, inputBinding: {}}}
      baseCommand: echo
      stdout: out.txt
      outputs:
        said:
          type: string
          outputBinding:
            glob: out.txt
            loadContents: true
            outputEval: $(self[0].contents.trim())
  small:
    in: {word: {default: light}}
    out: [said]
    run:
      class: CommandLineTool
      inputs: {word: {type: string, inputBinding: {}}}
      baseCommand: echo
      stdout: out.txt
      outputs:
        said:
          type: string
          outputBinding:
            glob: out.txt
            loadContents: true
            outputEval: $(self[0].contents.trim())
