"""Sweep bookkeeping without orchestration: spec, grid expansion, results store, lock."""
