"""replan_planner.

Turns an image and an instruction into a region plan with a VLM (vLLM over the OpenAI API, or in-
process transformers).
"""
