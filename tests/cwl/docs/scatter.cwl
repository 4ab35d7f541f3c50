cwlVersion: v1.2
class: Workflow
doc: A scatter (one chordflow task per name) of a tool from another file, nested.
requirements:
  ScatterFeatureRequirement: {}
  StepInputExpressionRequirement: {}
inputs:
  names: string[]
  greetings: string[]
outputs:
  lines:
    type:
      type: array
      items: {type: array, items: string}
    outputSource: greet/line
steps:
  greet:
    run: tools/greet.cwl
    scatter: [greeting, name]
    scatterMethod: nested_crossproduct
    in:
      greeting: greetings
      name: names
    out: [line]
