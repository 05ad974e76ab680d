"""Task modules used as ``--task-module`` fixtures; the deliberately broken one is not collected."""

collect_ignore = ["broken_import.py"]
