"""The `replan` command line: one typer app, one sub-app per command group."""
