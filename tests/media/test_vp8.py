"""VP8 picture-id renumbering across simulcast switches (media/vp8.py), byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media.vp8 import Vp8Numbering

#: libwebrtc's usual flags half the time, any byte the other half
_USUAL_OR_ANY = {
    "x_byte": st.one_of(st.sampled_from([0x80, 0x90]), st.integers(0, 255)),
    "ext_byte": st.one_of(st.sampled_from([0xC0, 0xE0, 0xF0]), st.integers(0, 255)),
    "rest": st.one_of(  # a 15-bit picture id (M set) first, or anything, truncated ones too
        st.binary(min_size=1, max_size=12).map(lambda b: bytes([b[0] | 0x80]) + b[1:]),
        st.binary(max_size=12),
    ),
}


@given(
    **_USUAL_OR_ANY,
    pic_delta=st.integers(0, 0x7FFF),
    tl0_delta=st.integers(0, 0xFF),
)
def test_the_usual_descriptor_is_renumbered_as_the_general_path_does(
    x_byte: int, ext_byte: int, rest: bytes, pic_delta: int, tl0_delta: int
) -> None:
    """The one-step path for libwebrtc's usual descriptor (X, I with a 15-bit picture id, L)
    writes the same bytes and remembers the same last numbers as the field-by-field path,
    whatever the descriptor (any flags, truncated ones too)."""
    payload = bytes([x_byte, ext_byte]) + rest
    fast, general = Vp8Numbering(), Vp8Numbering()
    for numbering in (fast, general):
        numbering._pic_delta, numbering._tl0_delta = pic_delta, tl0_delta
    # the general path: each field found from the descriptor's flags, then rewritten
    assert fast.rewrite(payload) == general._rewrite_any(payload)
    assert (fast._last_pic, fast._last_tl0) == (general._last_pic, general._last_tl0)


def test_a_switch_continues_the_picture_ids_and_tl0picidx() -> None:
    """After a re-base on the new layer's keyframe, its numbers continue the last ones sent."""
    numbering = Vp8Numbering()

    def packet(picture: int, tl0: int) -> bytes:
        return bytes([0x90, 0xE0, 0x80 | picture >> 8, picture & 0xFF, tl0, 0x20]) + b"frame"

    numbering.rebase(packet(1000, 7))
    assert numbering.rewrite(packet(1000, 7))[2:5] == bytes([0x83, 0xE8, 7])
    numbering.rewrite(packet(1001, 8))
    numbering.rebase(packet(20000, 200))  # another layer's keyframe
    out = numbering.rewrite(packet(20000, 200))
    assert out[2:5] == bytes([0x80 | 1002 >> 8, 1002 & 0xFF, 9])
    assert out[5:] == bytes([0x20]) + b"frame"
    out = numbering.rewrite(packet(0x7FFF, 255))  # the new layer's ids wrap: so do ours
    assert ((out[2] & 0x7F) << 8 | out[3], out[4]) == ((1002 + 0x7FFF - 20000) & 0x7FFF, 64)
