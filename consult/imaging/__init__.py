"""Imaging: DICOM studies of a patient, attached to visits (R19, R20, R21, R37).

:mod:`.models` (tables), :mod:`.errors` (stable codes), :mod:`.parse` (the ingest parser: bytes
in, a checked dataset or a refusal), :mod:`.store` (files on disk named by our ids, rows, audit),
:mod:`.access` (the one check every retrieval goes through), :mod:`.query` (QIDO-RS matching and
the DICOM JSON model), :mod:`.deidentify` (PS3.15 Annex E for studies that leave the
institution), :mod:`.render` (frames and rendered PNGs), :mod:`.ecg` (12-lead waveforms).

Importing this package imports no DICOM library; the modules that need pydicom import it.
"""
