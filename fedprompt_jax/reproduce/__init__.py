"""Regenerates the README's tables: producers (tables.py), their files under results/ (results_io.py)
and the README blocks that embed them (readme_sync.py). The command is launch/reproduce.py."""
