"""replan_common: the kit every replan-suite service shares.

Plan schema and planner-output parser, box geometry, image I/O, the error model, settings, HTTP helpers
(error envelope, request ids, metrics, service clients), logging, and the `replan` CLI.
Importing it does nothing beyond defining names.
"""

__version__ = "0.1.0"
