cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: debian:stable-slim
inputs: []
baseCommand: [echo, in a container]
outputs: []
