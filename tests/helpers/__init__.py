"""Shared test helpers: CLI subprocess and gate utilities (``runner_utils``), the warm forkserver CLI
(``warm_cli``), injected-answer runs (``injected_runs``), rows with known right/wrong answers (``known_answers``),
realistic prompt rows (``prompt_rows``), synthetic images (``images``), shared-image TSVs (``reuse_data``) and a
VLMEvalKit wrapper answering from pixels (``vlmeval_pixel``). Test modules import from here, never from each other.
"""
