cwlVersion: v1.2
class: Workflow
doc: >
  chordflow's own CWL test: scatter with valueFrom, a conditional step, linkMerge and
  pickValue, a tool with a secondary file, an ExpressionTool with records and enums,
  and a subworkflow.
requirements:
  ScatterFeatureRequirement: {}
  StepInputExpressionRequirement: {}
  InlineJavascriptRequirement: {}
  MultipleInputFeatureRequirement: {}
  SubworkflowFeatureRequirement: {}
inputs:
  names: string[]
  greeting: string
  data:
    type: File
    secondaryFiles: [.idx]
  extra: string?
outputs:
  greetings:
    type: string[]
    outputSource: greet/line
  joined:
    type: string
    outputSource: collect/joined
  summary:
    type:
      type: record
      fields:
        lines: int
        kind: string
    outputSource: collect/summary
  doubled:
    type: int
    outputSource: sub/doubled
  report:
    type: File
    outputSource: count/report
  index:
    type: string
    outputSource: count/index
steps:
  greet:
    run: tools/greet.cwl
    scatter: name
    in:
      greeting: greeting
      name:
        source: names
        valueFrom: $(self.toUpperCase())
    out: [line]
  skipped:
    run: tools/greet.cwl
    when: $(inputs.name !== null)
    in:
      greeting: greeting
      name: extra
    out: [line]
  count:
    run: tools/count.cwl
    in:
      data: data
    out: [lines, report, index]
  collect:
    in:
      lines:
        source: [greet/line, skipped/line]
        linkMerge: merge_flattened
        pickValue: all_non_null
      count: count/lines
      kind: greeting
    out: [joined, summary]
    run:
      class: ExpressionTool
      inputs:
        lines: string[]
        count: int
        kind: string
      outputs:
        joined: string
        summary:
          type:
            type: record
            fields:
              lines: int
              kind: string
      expression: |
        ${ return {"joined": inputs.lines.join(" / "),
                   "summary": {"lines": inputs.count, "kind": inputs.kind}}; }
  sub:
    in:
      n: count/lines
    out: [doubled]
    run:
      class: Workflow
      inputs:
        n: int
      outputs:
        doubled:
          type: int
          outputSource: twice/out
      steps:
        twice:
          in:
            n: n
          out: [out]
          run:
            class: ExpressionTool
            inputs:
              n: int
            outputs:
              out: int
            expression: "$({'out': inputs.n * 2})"
