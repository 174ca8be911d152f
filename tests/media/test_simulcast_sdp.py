"""Reading a browser's simulcast offer and completing our answer (RFC 8853, RFC 8851)."""

from __future__ import annotations

from media.simulcast import URI_REPAIRED_RID, URI_RID, complete_answer, parse_offer

# the video section of Chromium's offer for addTransceiver(track, {sendEncodings: [h, f]})
CHROME_VIDEO = "\r\n".join(
    [
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=rid:x send",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:10 {URI_RID}",
        f"a=extmap:11 {URI_REPAIRED_RID}",
        "a=sendonly",
        "a=rtpmap:96 VP8/90000",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send h;f",
        "",
    ]
)


def test_a_chrome_offer_names_its_layers_lowest_first():
    offers = parse_offer("v=0\r\n" + CHROME_VIDEO)
    assert list(offers) == ["1"]  # audio never is simulcast
    assert offers["1"].rids == ("h", "f")
    assert offers["1"].extensions == {URI_RID: 10, URI_REPAIRED_RID: 11}


def test_alternatives_paused_layers_and_garbage():
    sdp = CHROME_VIDEO.replace("a=simulcast:send h;f", "a=simulcast:send ~h,x;f")
    assert parse_offer(sdp)["1"].rids == ("h", "f")
    # a rid that is not declared, or not a token, is not a layer; one layer is no simulcast
    assert "1" not in parse_offer(CHROME_VIDEO.replace("a=rid:f send", "a=rid:f;drop send"))
    assert "1" not in parse_offer(CHROME_VIDEO.replace(f"a=extmap:10 {URI_RID}", "a=extmap:x"))
    for garbage in ("", "m=video", "a=simulcast:", "m=video 9\r\na=rid:\r\na=extmap:zz " + URI_RID):
        assert parse_offer(garbage) == {}
    many = CHROME_VIDEO.replace(
        "a=simulcast:send h;f",
        "\r\n".join(f"a=rid:r{i} send" for i in range(9))
        + "\r\na=simulcast:send "
        + ";".join(f"r{i}" for i in range(9)),
    )
    assert len(parse_offer(many)["1"].rids) == 4


def test_the_answer_receives_the_offered_layers():
    answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=recvonly\r\n"
    done = complete_answer(answer, parse_offer(CHROME_VIDEO))
    video = done.split("m=video")[1]
    assert "a=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv h;f\r\n" in video
    assert "a=rid" not in done.split("m=video")[0]
    assert done.endswith("\r\n") and "\r\n\r\n" not in done
    # a rejected section (port 0) is left alone
    rejected = answer.replace("m=video 9", "m=video 0")
    assert "a=simulcast" not in complete_answer(rejected, parse_offer(CHROME_VIDEO))
