"""De-identification of a study that leaves its institution (R37): PS3.15 Annex E.

The basic application level confidentiality profile comes from dicom-anonymizer (Kitware; its
2026c table of Annex E actions). On top of it, our rules for what it leaves:

- the profile's actions are applied inside every sequence item too (the library acts on the
  top level only), so an attribute nested in a sequence gets the same action;
- UIDs are remapped by our own function, not the library's process-wide random map: a keyed
  hash of the original UID under the share's key (``2.25.<128-bit integer>``), so one share maps
  a UID the same way in every instance (references between instances stay consistent) and two
  shares of one study cannot be linked by their UIDs;
- every clinical trial attribute (group 0012), which the profile replaces with a dummy that may
  still be a trial's identifier, is removed;
- private tags are removed, whatever their creator;
- (0012,0062) Patient Identity Removed = YES, (0012,0063) and the (0012,0064) code record the
  method (DCM 113100 Basic Application Confidentiality Profile).

Burned-in annotation cannot be removed from pixels here: an instance whose (0028,0301) is YES,
or that does not say and comes from a modality that burns text in (US, SC, XC, ES, OT), is
flagged; the share reports how many were.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

ANNEX_E_VERSION: Final = "dicomfields_2026c"
BURNS_TEXT_IN: Final = frozenset({"US", "SC", "XC", "ES", "OT"})
METHOD: Final = "PS3.15 E.1 Basic Profile + teleconsult rules"

_actions_cache: dict[str, Any] = {}


def uid_mapper(key: bytes) -> Callable[[str], str]:
    """A UID -> UID function, the same for every instance of one share (keyed by ``key``)."""

    def remap(uid: str) -> str:
        if not uid:
            return uid
        digest = hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    return remap


def _base_actions() -> dict[Any, Any]:
    from dicomanonymizer.simpledicomanonymizer import initialize_actions

    if "base" not in _actions_cache:
        _actions_cache["base"] = initialize_actions(ANNEX_E_VERSION)
    return dict(_actions_cache["base"])


def _uid_tags() -> list[tuple[int, int]]:
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    tags = dicom_anonymization_database_selector(ANNEX_E_VERSION)
    return [tuple(t) for t in (*tags["U_TAGS"], *tags["X_Z_U_STAR_TAGS"])]  # type: ignore[misc]


def _rules(remap: Callable[[str], str]) -> dict[Any, Any]:
    def replace_uid(dataset: Dataset, tag: tuple[int, int]) -> None:
        element = dataset.get(tag)
        if element is None or element.VR != "UI":
            return
        if element.VM > 1:
            element.value = [remap(str(v)) for v in element.value]
        elif element.value:
            element.value = remap(str(element.value))

    actions = _base_actions()
    for tag in _uid_tags():
        actions[tag] = replace_uid
    return actions


def _is_uid_to_keep(element: Any) -> bool:
    return element.keyword in {"SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID"}


def _apply(ds: Dataset, actions: dict[Any, Any], remap: Callable[[str], str], depth: int) -> None:
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset

    if depth > 16:
        return
    anonymize_dataset(ds, actions, delete_private_tags=True, base_rules_gen=dict)
    for element in list(ds):
        tag: BaseTag = element.tag
        if tag.group == 0x0012:  # clinical trial attributes: removed, not replaced
            del ds[tag]
        elif element.VR == "UI" and not _is_uid_to_keep(element) and element.value:
            # A UID the table does not list (an instance reference of some module): remap it,
            # so no original UID leaves; well-known class UIDs are kept.
            if not str(element.value).startswith("1.2.840.10008."):
                replace = _rules_uid(remap)
                replace(ds, (tag.group, tag.element))
        elif element.VR == "SQ" and isinstance(element.value, DicomSequence):
            for item in element.value:
                _apply(item, actions, remap, depth + 1)


def _rules_uid(remap: Callable[[str], str]) -> Callable[[Dataset, tuple[int, int]], None]:
    def replace_uid(dataset: Dataset, tag: tuple[int, int]) -> None:
        element = dataset[tag]
        if element.VM > 1:
            element.value = [
                v if str(v).startswith("1.2.840.10008.") else remap(str(v)) for v in element.value
            ]
        else:
            element.value = remap(str(element.value))

    return replace_uid


def deidentify(ds: Dataset, remap: Callable[[str], str]) -> bool:
    """De-identify ``ds`` in place; return whether it is flagged for burned-in annotation."""
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    modality = str(ds.get("Modality", "") or "").upper()
    flagged = burned == "YES" or (burned != "NO" and modality in BURNS_TEXT_IN)
    actions = _rules(remap)
    _apply(ds, actions, remap, 0)
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    if flagged:
        ds.BurnedInAnnotation = "YES"
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformation",
            "PrivateInformationCreatorUID",
        ):
            if keyword in meta:
                del meta[keyword]
    return flagged
