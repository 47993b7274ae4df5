"""The Tune page's strategy helper shows the evidence-backed reason as text: the model names it quotes come from
core/schedule_evidence.json, a file, so Markdown in them must not render (AppTest)."""

from __future__ import annotations

import json
from dataclasses import asdict

from core import schedule_evidence
from core.config import Schedule
from dashboard.components.text import md
from tests.dashboard.test_app import open_app
from tests.dashboard.test_strategy import MODEL, answer

NAME = "**bold** [link](http://example.com/x.png)"  # a model name as an edited evidence file could hold


def test_the_reason_quotes_the_evidence_as_text(monkeypatch, tmp_path):
    path = tmp_path / "schedule_evidence.json"
    cell = {"scope": "layer", "ratio": 0.9, "seeds": [0, 1, 2], "changes": {"iterative (3 rounds)": {
        "kind": "iterative", "settings": asdict(Schedule("iterative")), "change": -3.4}}}
    path.write_text(json.dumps({"families": {"cnn": {NAME: {"unit": "points", "cells": [cell]}}}}))
    monkeypatch.setattr(schedule_evidence, "PATH", path)
    at = answer(open_app(monkeypatch, MODEL, tmp_path / "home", "tune"), "speed", "none", "cpu")
    why = next(c.value for c in at.caption if c.value.startswith("Why: "))
    assert "3.4 points below one-shot" in why and md(NAME) in why
