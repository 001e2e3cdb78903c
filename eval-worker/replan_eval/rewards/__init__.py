"""GRPO rewards for the RePlan planner: stage 1 (format, quality, region; CPU) and stage 2 (edit + judge).

The formulas reproduce the original training code (`reference/replan-facts.md` §4); each module's
docstring lists where the facts left room and what we chose.
"""
