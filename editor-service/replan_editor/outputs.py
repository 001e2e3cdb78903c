"""What `replan edit` writes for one edit: `final_result.png`, `plan.json`, `visualization.png` and
`config.json` (every resolved setting, where it ran, timings), or only the PNG with `--only-save-image`.
File names match the original's CLI so scripts reading its output directories keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from replan_common import __version__
from replan_editor.sessions import SessionEdit
from replan_editor.visualize import draw_plan

FINAL_RESULT = "final_result.png"
PLAN = "plan.json"
VISUALIZATION = "visualization.png"
CONFIG = "config.json"


def write_outputs(
    directory: Path,
    *,
    source: Image.Image,
    edit: SessionEdit,
    run: dict[str, Any],
    only_image: bool = False,
) -> list[Path]:
    """Write the files of one edit into `directory` (created); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / FINAL_RESULT]
    edit.image.save(written[0])
    if only_image:
        return written
    plan_path = directory / PLAN
    plan_path.write_text(edit.plan.model_dump_json(indent=2) + "\n", encoding="utf-8")
    visual_path = directory / VISUALIZATION
    draw_plan(
        source, edit.plan, expand_value=edit.settings.expand_value or 0.0, expand_mode=edit.settings.expand_mode
    ).save(visual_path)
    config_path = directory / CONFIG
    config = {
        "version": __version__,
        **run,
        "settings": edit.settings.model_dump(mode="json"),
        "timings_ms": {name: round(ms, 2) for name, ms in edit.timings_ms.items()},
    }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return [*written, plan_path, visual_path, config_path]
