"""YouTube adapter: link parsing, ISO-8601 durations, videos.list through the library's HttpMockSequence."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from googleapiclient.http import HttpMockSequence

from db.youtube import (
    MISSING_DETAIL,
    InvalidYouTubeLinkError,
    YouTubeClient,
    lookup_video,
    parse_iso8601_duration,
    parse_video_id,
)
from tests.db.conftest import DATA

VID = "dQw4w9WgXcQ"

ACCEPTED = [
    (VID, VID),
    (f"  {VID}\n", VID),
    (f"https://www.youtube.com/watch?v={VID}", VID),
    (f"http://youtube.com/watch?v={VID}", VID),
    (f"https://www.youtube.com/watch?v={VID}&t=42s&feature=share&si=abcDEF", VID),
    (f"https://www.youtube.com/watch?feature=youtu.be&v={VID}", VID),
    (f"https://www.youtube.com/watch?v={VID}&list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs&index=3", VID),
    (f"www.youtube.com/watch?v={VID}", VID),
    (f"youtube.com/watch?v={VID}", VID),
    (f"https://m.youtube.com/watch?v={VID}", VID),
    (f"https://music.youtube.com/watch?v={VID}&si=x", VID),
    (f"https://WWW.YouTube.com/watch?v={VID}", VID),
    (f"https://youtu.be/{VID}", VID),
    (f"https://youtu.be/{VID}?si=Abc123&t=10", VID),
    (f"youtu.be/{VID}", VID),
    (f"https://www.youtube.com/shorts/{VID}", VID),
    (f"https://youtube.com/shorts/{VID}?feature=share", VID),
    (f"https://www.youtube.com/embed/{VID}?start=30", VID),
    (f"https://www.youtube-nocookie.com/embed/{VID}", VID),
    (f"https://www.youtube.com/live/{VID}?si=xyz", VID),
    (f"https://www.youtube.com/v/{VID}", VID),
    (f"<https://www.youtube.com/watch?v={VID}>", VID),
    (f"https://www.youtube.com:443/watch?v={VID}", VID),
    ("https://youtu.be/diBoTD4-uG8", "diBoTD4-uG8"),
    ("https://www.youtube.com/shorts/Lq9bf_QUSns", "Lq9bf_QUSns"),
]

REJECTED = [
    ("", "empty"),
    ("hello", "not a YouTube host"),
    (f"https://youtube.com.evil.io/watch?v={VID}", "not a YouTube host"),
    (f"https://www.youtube.com@evil.io/watch?v={VID}", "user name"),
    (f"https://notyoutube.com/watch?v={VID}", "not a YouTube host"),
    (f"https://youtube.co/watch?v={VID}", "not a YouTube host"),
    (f"https://youtu.be.evil.io/{VID}", "not a YouTube host"),
    (f"https://evil.io/?u=https://youtube.com/watch?v={VID}", "not a YouTube host"),
    (f"https://yout.ube/{VID}", "not a YouTube host"),
    (f"javascript:alert('{VID}')", "http"),
    (f"ftp://youtube.com/watch?v={VID}", "http"),
    ("https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", "playlist"),
    ("https://www.youtube.com/watch?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", "playlist"),
    ("https://www.youtube.com/embed/videoseries?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", "playlist"),
    ("https://www.youtube.com/channel/UC_x5XG1OV2P6uZZ5FSM9Ttw", "channel"),
    ("https://www.youtube.com/@LISAFIITT", "channel"),
    ("https://www.youtube.com/c/GirlsGoneStrong", "channel"),
    ("https://www.youtube.com/user/somebody", "channel"),
    ("https://www.youtube.com/results?search_query=leg+press", "search page"),
    ("https://www.youtube.com/", "home page"),
    ("https://www.youtube.com/watch", "no v= video id"),
    ("https://www.youtube.com/watch?v=short", "not an 11-character video id"),
    (f"https://www.youtube.com/watch?v={VID}x", "not an 11-character video id"),
    ("https://youtu.be/", "no video id"),
    ("https://www.youtube.com/shorts/", "no video id"),
    ("https://www.youtube.com/feed/subscriptions", "not single videos"),
    ("dQw4w9WgXc!", "not a YouTube host"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_links(text: str, expected: str) -> None:
    assert parse_video_id(text) == expected


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_rejected_links_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidYouTubeLinkError) as excinfo:
        parse_video_id(text)
    assert reason in excinfo.value.reason
    assert "not a YouTube video link" in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT38S", 38),
        ("PT4M13S", 253),
        ("PT1H", 3600),
        ("PT1H2M13S", 3733),
        ("P1DT2S", 86402),
        ("P1W", 604800),
        ("PT0S", 0),
        ("P0D", 0),
        ("PT1.6S", 2),
    ],
)
def test_iso8601_durations(text: str, seconds: int) -> None:
    assert parse_iso8601_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "4M13S", "P1Y", "PT1H2", "P1DT", "PT-1S"])
def test_bad_durations_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso8601_duration(text)


def _body(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def _items_response(ids: list[str]) -> str:
    template: dict[str, Any] = json.loads(_body("video_item_template.json"))
    items = []
    for i, video_id in enumerate(ids):
        item = copy.deepcopy(template)
        item["id"] = video_id
        item["snippet"]["title"] = f"Video {i}"
        items.append(item)
    return json.dumps({"kind": "youtube#videoListResponse", "items": items})


def _fake_ids(n: int) -> list[str]:
    return [f"vid{i:08d}" for i in range(n)]


def _requested_ids(uri: str) -> list[str]:
    query = parse_qs(urlsplit(uri).query)
    return query["id"][0].split(",")


OK = {"status": "200", "content-type": "application/json; charset=UTF-8"}


def test_sixty_ids_take_two_videos_list_calls() -> None:
    ids = _fake_ids(60)
    missing = ids[55]
    http = HttpMockSequence(
        [(OK, _items_response(ids[:50])), (OK, _items_response([i for i in ids[50:] if i != missing]))]
    )
    report = YouTubeClient("test-key", http=http).fetch(ids)
    assert report.api_calls == 2
    assert len(http.request_sequence) == 2
    first_uri = http.request_sequence[0][0]
    assert urlsplit(first_uri).path.endswith("/youtube/v3/videos")
    query = parse_qs(urlsplit(first_uri).query)
    assert query["part"] == ["snippet,contentDetails,status"]
    assert query["key"] == ["test-key"]
    assert "maxResults" not in query  # the API refuses maxResults together with id
    assert [len(_requested_ids(uri)) for uri, *_ in http.request_sequence] == [50, 10]
    assert all("search" not in uri for uri, *_ in http.request_sequence)
    assert len(report.videos) == 60 and report.errors == []
    assert report.videos[ids[0]].status == "available"
    assert report.videos[ids[0]].duration_seconds == 62
    assert report.videos[missing].status == "unavailable"
    assert report.videos[missing].detail == MISSING_DETAIL


def test_duplicate_and_malformed_ids_are_not_sent() -> None:
    http = HttpMockSequence([(OK, _items_response([VID]))])
    report = YouTubeClient("k", http=http).fetch([VID, VID, "bad id"])
    assert report.api_calls == 1
    assert _requested_ids(http.request_sequence[0][0]) == [VID]
    assert any("bad id" in e for e in report.errors)


def test_metadata_of_public_unlisted_private_and_missing_videos() -> None:
    ids = ["7GtUE1MAniY", "Xef_H9ZLkdY", "u2GwfCmfUrY", "JGzA6FPzZS8", "nmuC472g9rE"]
    http = HttpMockSequence([(OK, _body("videos_list_seed.json"))])
    report = YouTubeClient("k", http=http).fetch(ids)
    bench = report.videos["7GtUE1MAniY"]
    assert (bench.status, bench.title, bench.channel, bench.duration_seconds) == (
        "available",
        "How to Bench Press (Barbell)",
        "LIndseyReneeBell",
        38,
    )
    assert bench.thumbnail_url == "https://i.ytimg.com/vi/7GtUE1MAniY/hqdefault.jpg"
    goblet = report.videos["Xef_H9ZLkdY"]
    assert goblet.duration_seconds == 3733 and goblet.detail == "blocked in 2 countries"
    assert goblet.thumbnail_url is not None and goblet.thumbnail_url.endswith("mqdefault.jpg")
    walk = report.videos["u2GwfCmfUrY"]
    assert walk.status == "available" and walk.detail == "unlisted, age-restricted"
    assert report.videos["JGzA6FPzZS8"].status == "unavailable"
    assert report.videos["JGzA6FPzZS8"].detail == "private"
    assert report.videos["nmuC472g9rE"].status == "unavailable"
    assert report.unchecked(ids) == []


def test_quota_error_is_reported_not_raised_and_stops_further_calls() -> None:
    ids = _fake_ids(120)
    http = HttpMockSequence(
        [
            (OK, _items_response(ids[:50])),
            ({"status": "403", "content-type": "application/json"}, _body("error_quota_exceeded.json")),
        ]
    )
    report = YouTubeClient("k", http=http).fetch(ids)
    assert report.quota_exceeded
    assert report.api_calls == 2 and len(http.request_sequence) == 2
    assert len(report.videos) == 50
    assert len(report.unchecked(ids)) == 70
    assert "quota" in report.errors[0] and "70 video(s) not checked" in report.errors[0]


def test_bad_key_is_reported_not_raised() -> None:
    http = HttpMockSequence(
        [({"status": "400", "content-type": "application/json"}, _body("error_key_invalid.json"))]
    )
    report = YouTubeClient("wrong", http=http).fetch(_fake_ids(70))
    assert not report.quota_exceeded
    assert report.api_calls == 1  # no point repeating a call with a bad key
    assert report.videos == {}
    assert "400" in report.errors[0] and "API key not valid" in report.errors[0]


def test_server_error_skips_only_that_batch() -> None:
    ids = _fake_ids(60)
    http = HttpMockSequence(
        [
            ({"status": "500"}, '{"error": {"code": 500, "message": "Backend Error"}}'),
            (OK, _items_response(ids[50:])),
        ]
    )
    report = YouTubeClient("k", http=http, num_retries=0).fetch(ids)
    assert report.api_calls == 2
    assert set(report.videos) == set(ids[50:])
    assert "500" in report.errors[0]


def test_network_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def request(self, *args: object, **kwargs: object) -> tuple[object, bytes]:
            raise OSError("Network is unreachable")

    report = YouTubeClient("k", http=Unreachable()).fetch([VID])
    assert report.videos == {} and "unreachable" in report.errors[0].lower()


def test_lookup_without_key_keeps_curator_text_unverified() -> None:
    lookup = lookup_video(None, VID)
    assert not lookup.verified and lookup.metadata is None
    assert "YOUTUBE_API_KEY" in lookup.message and "unverified" in lookup.message


def test_lookup_with_key() -> None:
    http = HttpMockSequence([(OK, _body("videos_list_seed.json"))])
    lookup = lookup_video(YouTubeClient("k", http=http), "JGzA6FPzZS8")
    assert lookup.verified and lookup.metadata is not None
    assert "unavailable" in lookup.message and "private" in lookup.message
    quota = HttpMockSequence([({"status": "403"}, _body("error_quota_exceeded.json"))])
    lookup = lookup_video(YouTubeClient("k", http=quota), VID)
    assert not lookup.verified and "quota" in lookup.message
