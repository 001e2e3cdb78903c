"""`python -m replan_common.cli` runs the `replan` command (used where the console script is not on PATH)."""

from replan_common.cli.main import main

main()
