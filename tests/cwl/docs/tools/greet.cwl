cwlVersion: v1.2
class: CommandLineTool
doc: A greeting from the environment, a staged template and a shell pipe.
requirements:
  InlineJavascriptRequirement: {}
  ShellCommandRequirement: {}
  EnvVarRequirement:
    envDef:
      GREETING: $(inputs.greeting)
  InitialWorkDirRequirement:
    listing:
      - entryname: template.txt
        entry: "$(inputs.name)!"
  ResourceRequirement:
    coresMin: 1
    ramMin: 64
inputs:
  greeting: string
  name: string
  punctuate:
    type: boolean?
arguments:
  - shellQuote: false
    valueFrom: echo "$GREETING `cat template.txt`" | tr -s ' '
stdout: out.txt
outputs:
  line:
    type: string
    outputBinding:
      glob: out.txt
      loadContents: true
      outputEval: $(self[0].contents.trim())
