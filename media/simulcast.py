"""Simulcast in the SDP: what a publisher offers (a=rid / a=simulcast) and what we answer.

aiortc 1.16 knows nothing of simulcast: it drops the ``a=rid`` and ``a=simulcast`` lines of an
offer, and an answer without them makes a browser send one layer only. So the offer is read
here, the rid header extensions are negotiated on the transceiver (through the seam), and the
answer is completed with ``a=rid:<rid> recv`` and ``a=simulcast:recv <rids>`` (RFC 8853). The
layers themselves are told apart at packet level by their rid header extension (media/producer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

#: More layers than this are refused (browsers send at most three; each costs state).
MAX_LAYERS = 4
#: A rid is 1-16 alphanumeric characters (RFC 8851 allows more; browsers use short ones).
MAX_RID_LENGTH = 16


@dataclass(frozen=True)
class SimulcastOffer:
    """One m-section's simulcast: its rids in the offer's order (lowest layer first, as the
    page lists its encodings) and the header-extension ids it uses for them."""

    mid: str
    rids: tuple[str, ...]
    extensions: dict[str, int] = field(default_factory=dict)


def _valid_rid(rid: str) -> bool:
    return 0 < len(rid) <= MAX_RID_LENGTH and rid.isascii() and rid.isalnum()


def _sections(sdp: str) -> list[list[str]]:
    """The media sections of ``sdp`` as lists of lines (the session part is left out)."""
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    return sections


def parse_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """Video m-sections that offer to send simulcast, by mid. Malformed lines are ignored:
    the section then simply is not simulcast."""
    offers: dict[str, SimulcastOffer] = {}
    for lines in _sections(sdp):
        if not lines[0].startswith("m=video"):
            continue
        mid = None
        declared: list[str] = []
        order: list[str] = []
        extensions: dict[str, int] = {}
        for line in lines:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send" and _valid_rid(parts[0]):
                    declared.append(parts[0])
            elif line.startswith("a=simulcast:"):
                parts = line[len("a=simulcast:") :].split()
                if len(parts) >= 2 and parts[0] == "send":
                    # "l;m;h", alternatives after commas, "~" marks a paused stream
                    order = [alt.split(",")[0].lstrip("~") for alt in parts[1].split(";")]
            elif line.startswith("a=extmap:"):
                parts = line[len("a=extmap:") :].split()
                if len(parts) >= 2 and parts[1] in (URI_RID, URI_REPAIRED_RID):
                    try:
                        extensions[parts[1]] = int(parts[0].split("/")[0])
                    except ValueError:
                        continue
        rids = [rid for rid in order if rid in declared] or declared
        rids = list(dict.fromkeys(rids))[:MAX_LAYERS]
        if mid and len(rids) >= 2 and URI_RID in extensions:
            offers[mid] = SimulcastOffer(mid=mid, rids=tuple(rids), extensions=extensions)
    return offers


def complete_answer(answer_sdp: str, offers: dict[str, SimulcastOffer]) -> str:
    """Add ``a=rid:<rid> recv`` and ``a=simulcast:recv ...`` to the answer's m-sections whose
    mid offered simulcast (and that were not rejected)."""
    if not offers:
        return answer_sdp
    newline = "\r\n" if "\r\n" in answer_sdp else "\n"
    out: list[str] = []
    head, *rest = answer_sdp.split(newline + "m=")
    out.append(head)
    for chunk in rest:
        lines = ("m=" + chunk).split(newline)
        mid = next((line[6:].strip() for line in lines if line.startswith("a=mid:")), None)
        offer = offers.get(mid or "")
        if offer is not None and lines[0].split()[1:2] != ["0"]:
            # after the last attribute line (an answer ends with a newline: keep it last)
            end = len(lines)
            while end > 0 and not lines[end - 1]:
                end -= 1
            extra = [f"a=rid:{rid} recv" for rid in offer.rids]
            extra.append("a=simulcast:recv " + ";".join(offer.rids))
            lines[end:end] = extra
        out.append(newline.join(lines))
    return out[0] + "".join(newline + chunk for chunk in out[1:])
