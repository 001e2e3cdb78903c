"""replan_editor.

The GPU editor: region-attention engine (plain PyTorch), diffusers adapters for FLUX.1 Kontext and
Qwen-Image-Edit, and the editor worker's HTTP API.
"""
