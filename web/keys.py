"""Typed application state (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from consult.db import Database
from consult.imaging.store import ImagingStore
from media.pool import MediaPool
from recording import Recorder
from signaling import SignalingServer

from .config import Config
from .reminders import ReminderTask

CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", Database)
MEDIA = web.AppKey("media", MediaPool)
SIGNALING = web.AppKey("signaling", SignalingServer)
#: None when recording is switched off by configuration.
RECORDER: web.AppKey[Recorder | None] = web.AppKey("recorder")
IMAGING = web.AppKey("imaging", ImagingStore)
REMINDERS = web.AppKey("reminders", ReminderTask)
