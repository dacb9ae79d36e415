"""Geofences and routes API: filled in once the rules area's storage module lands."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["geofences"])
