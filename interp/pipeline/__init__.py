"""The main job: typed config and presets (config, configs/), the stage runner (runner), the stages (stages), the report (report, report_build)."""
