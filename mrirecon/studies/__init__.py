"""Studies: `mrirecon study study=<name>` runs the stages a conf/study/<name>.yaml declares
(preprocess, train, reconstruct, evaluate), in order, each through the CLI in its own process and
run (sweep) dir under the study folder, passing outputs from stage to stage by name
(`${stage:<name>}`), and skipping a stage whose outputs exist for the same resolved config.

Modules: `plan` (the stages read from the config, checked and ordered), `references` (the
`${stage:...}` and `${best:...}` resolvers), `identity` (a stage's sweep points, their resolved
configs and its hash), `records` (stage.json: what a finished stage made), `launch` (the command
lines and the child processes), `runner` (one stage: skip or run), `summary` (study.json,
study.md). The package sits at the tasks layer: it runs subcommands, never imports their code.
"""
